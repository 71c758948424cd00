"""A live host with /mcp for the MCP tests: API keys, an operator config file, a deny-list.

It has its own data directory (so installing into it cannot disturb the other API tests) with
the echo, stream, secret and hang fixtures installed through /v1 before any test connects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import httpx
import httpx2
import pytest
from mcp.client import Client
from mcp.client.session import MessageHandlerFnT
from mcp.client.streamable_http import streamable_http_client

from tests.api.support import INSTALL_TIMEOUT_S, LiveServer, free_port, write_config

API_KEY: Final = "mcp-test-key-7f3a91"
AUTH: Final = {"Authorization": f"Bearer {API_KEY}"}
OPERATOR_KEY: Final = "sk-operator-secret-5521"
INSTALLED: Final = ("echo", "stream", "secret", "hang")
# Every MCP request of a test (the official client's own default read timeout is 300 s).
MCP_TIMEOUT_S: Final = 60.0
# The two protocol eras the official client speaks: 2026-07-28 (probed first) and the
# initialize handshake (2025-11-25, stateful sessions).
MODES: Final = ("auto", "legacy")


class McpHost(LiveServer):
    @property
    def mcp_url(self) -> str:
        return f"{self.url}/mcp"

    def install(self, wheel: Path) -> dict[str, Any]:
        response = httpx.post(
            f"{self.url}/v1/InstallPackage",
            json={"uri": wheel.as_uri(), "filename": wheel.name, "force": True},
            headers=AUTH,
            timeout=INSTALL_TIMEOUT_S,
        )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    def processes(self) -> list[dict[str, Any]]:
        response = httpx.post(f"{self.url}/v1/ListProcesses", json={}, headers=AUTH, timeout=30)
        data: list[dict[str, Any]] = response.json()["data"]
        return data


@pytest.fixture(scope="session")
def mcp_host(
    tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, wheels: dict[str, Path]
) -> Iterator[McpHost]:
    root = tmp_path_factory.mktemp("mcp")
    operator = root / "plugins.toml"
    operator.write_text(
        f'["hiagent_plugin_secret".secret]\napi_key = "{OPERATOR_KEY}"\nregion = "eu"\n',
        encoding="utf-8",
    )
    operator.chmod(0o600)
    port = free_port()
    config = write_config(
        root / "runtime.toml",
        root / "data",
        wheelhouse,
        port,
        auth={"api_keys": [API_KEY]},
        mcp={"config_file": str(operator), "deny_tools": ["hiagent-plugin-hang/*/block_loop"]},
    )
    host = McpHost(config, port, root / "server.log")
    host.start()
    try:
        for name in INSTALLED:
            host.install(wheels[name])
        yield host
    finally:
        host.stop()


@asynccontextmanager
async def connect(
    host: McpHost,
    *,
    mode: str = "auto",
    headers: dict[str, str] | None = None,
    message_handler: MessageHandlerFnT | None = None,
    auth: bool = True,
) -> AsyncIterator[Client]:
    """The official MCP client, connected to `host` with the API key (and `headers`)."""
    sent = {**(AUTH if auth else {}), **(headers or {})}
    http = httpx2.AsyncClient(headers=sent, timeout=MCP_TIMEOUT_S)
    transport = streamable_http_client(host.mcp_url, http_client=http)
    async with (
        http,
        Client(transport, mode=mode, message_handler=message_handler, cache=None) as client,
    ):
        yield client
