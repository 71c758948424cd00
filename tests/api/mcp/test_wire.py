"""/mcp at the wire, written from the MCP specification (Streamable HTTP), with no SDK involved.

Revision 2025-11-25: POST initialize → the server's `Mcp-Session-Id` → POST
notifications/initialized (202) → POST tools/list → POST tools/call, each later request
carrying `Mcp-Session-Id` and `MCP-Protocol-Version`; every POST accepts both
`application/json` and `text/event-stream`; DELETE ends the session, after which its id is 404.
Revision 2026-07-28: one self-contained POST per request, its `_meta` carrying the version,
the client's info and capabilities, and the routing headers `Mcp-Method` and `Mcp-Name`.
"""

from __future__ import annotations

import json
from typing import Any, Final

import httpx

from tests.api.mcp.conftest import AUTH, McpHost
from tests.api.support import parse_sse

HANDSHAKE_VERSION: Final = "2025-11-25"
MODERN_VERSION: Final = "2026-07-28"
ACCEPT: Final = {"Accept": "application/json, text/event-stream"}
ECHO_TOOL: Final = "hiagent-plugin-echo__echo__echo"
CLIENT_INFO: Final = {"name": "wire-test", "version": "1.0"}


def _message(response: httpx.Response) -> dict[str, Any]:
    """The one JSON-RPC response in a reply, whether sent as JSON or as an SSE stream."""
    assert response.status_code == 200, response.text
    kind = response.headers["content-type"].split(";")[0]
    if kind == "application/json":
        body: dict[str, Any] = response.json()
        return body
    assert kind == "text/event-stream", kind
    messages = [json.loads(e["data"]) for e in parse_sse(response.text) if e.get("data")]
    [reply] = [m for m in messages if "id" in m and ("result" in m or "error" in m)]
    return dict(reply)


def test_the_handshake_era_exchange_follows_the_specification(mcp_host: McpHost) -> None:
    with httpx.Client(base_url=mcp_host.url, headers=AUTH | ACCEPT, timeout=60) as http:
        opened = http.post(
            "/mcp",
            json={
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {
                    "protocolVersion": HANDSHAKE_VERSION, "capabilities": {},
                    "clientInfo": CLIENT_INFO,
                },
            },
        )  # fmt: skip
        init = _message(opened)
        session = opened.headers["mcp-session-id"]
        assert init["id"] == 1
        assert init["result"]["protocolVersion"] == HANDSHAKE_VERSION
        assert init["result"]["capabilities"]["tools"] == {"listChanged": True}
        assert init["result"]["serverInfo"]["name"] == "hiagent-host"

        headers = {"Mcp-Session-Id": session, "MCP-Protocol-Version": HANDSHAKE_VERSION}
        initialized = http.post(
            "/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers
        )
        assert initialized.status_code == 202

        listed = _message(
            http.post(
                "/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=headers
            )
        )
        assert listed["id"] == 2
        tools = {t["name"]: t for t in listed["result"]["tools"]}
        assert tools[ECHO_TOOL]["inputSchema"]["type"] == "object"

        called = _message(
            http.post(
                "/mcp",
                json={
                    "jsonrpc": "2.0", "id": 3, "method": "tools/call",
                    "params": {"name": ECHO_TOOL, "arguments": {"word": "wire"}},
                },
                headers=headers,
            )
        )  # fmt: skip
        assert called["id"] == 3
        assert called["result"]["isError"] is False
        assert called["result"]["structuredContent"] == {"result": {"word": "wire"}}
        assert called["result"]["content"] == [{"type": "text", "text": '{"word":"wire"}'}]

        unknown = _message(
            http.post(
                "/mcp",
                json={"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                      "params": {"name": "nope", "arguments": {}}},
                headers=headers,
            )
        )  # fmt: skip
        assert unknown["error"]["code"] == -32602

        assert http.delete("/mcp", headers=headers).status_code == 200
        gone = http.post(
            "/mcp", json={"jsonrpc": "2.0", "id": 5, "method": "ping"}, headers=headers
        )
        assert gone.status_code == 404


def test_a_post_that_does_not_accept_both_content_types_is_refused(mcp_host: McpHost) -> None:
    params = {"protocolVersion": HANDSHAKE_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO}
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
    headers = AUTH | {"Accept": "application/json"}
    response = httpx.post(mcp_host.mcp_url, json=body, headers=headers, timeout=60)
    assert response.status_code == 406


def test_a_2026_request_is_one_self_contained_post(mcp_host: McpHost) -> None:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
        "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    headers = AUTH | ACCEPT | {
        "MCP-Protocol-Version": MODERN_VERSION, "Mcp-Method": "tools/call", "Mcp-Name": ECHO_TOOL,
    }  # fmt: skip
    body = {
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": ECHO_TOOL, "arguments": {"n": 1}, "_meta": meta},
    }  # fmt: skip
    response = httpx.post(mcp_host.mcp_url, json=body, headers=headers, timeout=60)
    assert "mcp-session-id" not in response.headers
    reply = _message(response)
    assert reply["id"] == 7
    assert reply["result"]["structuredContent"] == {"result": {"n": 1}}
