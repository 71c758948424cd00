"""The /mcp endpoint driven by the official `mcp` client against a real host on 127.0.0.1."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any, Final

import anyio
import httpx
import mcp_types as types
import pytest
from mcp.client import IncomingMessage
from mcp.shared.exceptions import MCPError

from hiagent_host.errors import INVALID_TOOL_INPUT, TOOL_NOT_FOUND, UNAUTHORIZED
from tests.api.mcp.conftest import (
    MODES,
    OPERATOR_KEY,
    McpHost,
    connect,
)
from tests.api.support import free_port, write_config

pytestmark = pytest.mark.anyio

ECHO: Final = "hiagent-plugin-echo__echo__"
STREAM: Final = "hiagent-plugin-stream__stream__"
HANG: Final = "hiagent-plugin-hang__hang__"
SECRET_TOOL: Final = "hiagent-plugin-secret__secret__has_key"
CLOCK_TOOL: Final = "hiagent-plugin-clock__xn--h6qv61a8ige15c__current_time"
# Waiting for a plugin process to notice a cancelled call, or for a notification, is bounded.
WAIT_S: Final = 30.0
POLL_S: Final = 0.05
# A stopping host with nothing in flight exits well within this.
STOP_BOUND_S: Final = 20.0


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


async def test_tools_list_names_every_exposed_tool_with_its_schema(
    mcp_host: McpHost, mode: str
) -> None:
    async with connect(mcp_host, mode=mode) as client:
        assert client.server_capabilities.tools is not None
        assert client.server_capabilities.tools.list_changed is True
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert {f"{ECHO}echo", f"{ECHO}echo_async", f"{ECHO}repeat", SECRET_TOOL} <= set(tools)
    assert {f"{STREAM}numbers", f"{STREAM}fail_midway", f"{HANG}sleep_async"} <= set(tools)
    assert f"{HANG}block_loop" not in tools  # the deny-list
    repeat = tools[f"{ECHO}repeat"]
    assert repeat.input_schema["type"] == "object"
    assert repeat.input_schema["properties"]["count"]["description"] == "how many times"
    assert repeat.description is not None
    assert repeat.description.startswith("`text` `count`")
    assert repeat.meta is not None
    assert repeat.meta["io.hiagent/tool"] == {
        "pkg": "hiagent-plugin-echo", "version": "0.1.0", "plugin": "echo", "tool": "repeat",
        "stream": True,
    }  # fmt: skip


async def test_a_sync_tool_returns_its_result_as_text_and_structured_content(
    mcp_host: McpHost, mode: str
) -> None:
    async with connect(mcp_host, mode=mode) as client:
        result = await client.call_tool(f"{ECHO}echo", {"text": "你好", "n": [1, 2]})
    assert not result.is_error
    assert result.structured_content == {"result": {"text": "你好", "n": [1, 2]}}
    [content] = result.content
    assert isinstance(content, types.TextContent)
    assert content.text == '{"text":"你好","n":[1,2]}'


async def test_an_async_tool_returns_its_result(mcp_host: McpHost, mode: str) -> None:
    async with connect(mcp_host, mode=mode) as client:
        result = await client.call_tool(f"{ECHO}echo_async", {"k": "v"})
    assert not result.is_error
    assert result.structured_content == {"result": {"k": "v"}}


async def test_a_streaming_tool_sends_a_progress_notification_per_item_then_everything(
    mcp_host: McpHost, mode: str
) -> None:
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    async with connect(mcp_host, mode=mode) as client:
        result = await client.call_tool(f"{STREAM}numbers", {"n": 4}, progress_callback=on_progress)
    assert not result.is_error
    assert result.structured_content == {"items": [0, 1, 2, 3]}
    assert seen == [(1.0, "0"), (2.0, "1"), (3.0, "2"), (4.0, "3")]


async def test_a_failing_tool_is_an_error_result_with_its_code_and_message(
    mcp_host: McpHost, mode: str
) -> None:
    async with connect(mcp_host, mode=mode) as client:
        broke = await client.call_tool(f"{STREAM}fail_midway", {"n": 2})
        invalid = await client.call_tool(f"{ECHO}repeat", {"count": "many"})
    assert broke.is_error
    assert broke.structured_content is not None
    assert broke.structured_content["error"]["code"] == "StreamBroke"
    assert broke.structured_content["error"]["data"] == {"sent": 2}
    [content] = broke.content
    assert isinstance(content, types.TextContent)
    assert content.text.startswith("StreamBroke: ")
    assert invalid.is_error
    assert invalid.structured_content is not None
    assert invalid.structured_content["error"]["code"] == INVALID_TOOL_INPUT


async def test_naming_a_tool_that_is_not_exposed_is_a_json_rpc_error(
    mcp_host: McpHost, mode: str
) -> None:
    async with connect(mcp_host, mode=mode) as client:
        for name in ("no-such-tool", f"{HANG}block_loop"):
            with pytest.raises(MCPError) as caught:
                await client.call_tool(name, {})
            assert caught.value.code == types.INVALID_PARAMS
            assert caught.value.data["code"] == TOOL_NOT_FOUND


async def test_cancelling_a_call_cancels_the_plugin_call(mcp_host: McpHost, mode: str) -> None:
    async with connect(mcp_host, mode=mode) as client, anyio.create_task_group() as tg:
        tg.start_soon(client.call_tool, f"{HANG}sleep_async", {"seconds": 3600})
        # in flight from its acquire; in a sandbox its pid is known once it has started
        await _until(
            lambda: (
                _in_flight(mcp_host, "hiagent-plugin-hang") == 1
                and _pid(mcp_host, "hiagent-plugin-hang") is not None
            )
        )
        pid = _pid(mcp_host, "hiagent-plugin-hang")
        tg.cancel_scope.cancel()
    await _until(lambda: _in_flight(mcp_host, "hiagent-plugin-hang") == 0)
    assert _pid(mcp_host, "hiagent-plugin-hang") == pid  # cancelled in the plugin, not killed


async def test_cancelling_a_streaming_call_closes_the_plugins_stream(
    mcp_host: McpHost, mode: str
) -> None:
    closed_before = _plugin_log(mcp_host, "stream").count("slow stream closed after")
    first = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        first.set()

    async with connect(mcp_host, mode=mode) as client, anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: client.call_tool(
                f"{STREAM}slow", {"n": 100000, "interval_s": 0.01}, progress_callback=on_progress
            )
        )
        with anyio.fail_after(WAIT_S):
            await first.wait()
        tg.cancel_scope.cancel()
    await _until(
        lambda: _plugin_log(mcp_host, "stream").count("slow stream closed") > closed_before
    )


async def test_plugin_config_comes_from_the_operator_file_overlaid_by_the_connection(
    mcp_host: McpHost,
) -> None:
    async with connect(mcp_host) as client:
        stored = await client.call_tool(SECRET_TOOL, {})
    header = {"X-HiAgent-Config": '{"hiagent-plugin-secret/secret": {"region": "us"}}'}
    async with connect(mcp_host, headers=header) as client:
        overlaid = await client.call_tool(SECRET_TOOL, {})
    assert stored.structured_content == {"result": {"has_key": True, "region": "eu"}}
    assert overlaid.structured_content == {"result": {"has_key": True, "region": "us"}}
    assert OPERATOR_KEY not in mcp_host.log()


async def test_a_malformed_config_header_is_an_error_result(mcp_host: McpHost) -> None:
    async with connect(mcp_host, headers={"X-HiAgent-Config": "{not json"}) as client:
        result = await client.call_tool(SECRET_TOOL, {})
    assert result.is_error
    assert result.structured_content is not None
    assert result.structured_content["error"]["code"] == "BadRequest"


async def test_descriptions_follow_the_callers_accept_language(mcp_host: McpHost) -> None:
    async with connect(mcp_host, headers={"Accept-Language": "zh-CN,zh;q=0.9"}) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    echo = tools[f"{ECHO}echo"]
    assert echo.title is not None
    assert echo.title.startswith("回显: ")


async def test_installing_a_package_sends_tools_list_changed_on_the_session_stream(
    mcp_host: McpHost, wheels: dict[str, Path]
) -> None:
    changed = anyio.Event()

    async def on_message(message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with connect(mcp_host, mode="legacy", message_handler=on_message) as client:
        await client.list_tools()
        await anyio.to_thread.run_sync(mcp_host.install, wheels["clock"])
        with anyio.fail_after(WAIT_S):
            await changed.wait()
        names = {t.name for t in (await client.list_tools()).tools}
    assert CLOCK_TOOL in names


async def test_replacing_a_package_reaches_subscriptions_listen_streams(
    mcp_host: McpHost, wheels: dict[str, Path]
) -> None:
    async with connect(mcp_host) as client, client.listen(tools_list_changed=True) as events:
        await anyio.to_thread.run_sync(mcp_host.install, wheels["echo"])
        with anyio.fail_after(WAIT_S):
            event = await anext(aiter(events))
        assert type(event).__name__ == "ToolsListChanged"


async def test_a_request_without_the_api_key_is_refused(mcp_host: McpHost) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(mcp_host.mcp_url, json=body)
        wrong = await http.post(
            mcp_host.mcp_url, json=body, headers={"Authorization": "Bearer nope"}
        )
    assert response.status_code == wrong.status_code == 401
    assert response.json()["error"]["code"] == UNAUTHORIZED
    assert response.headers["www-authenticate"] == "Bearer"


# ---- helpers ---------------------------------------------------------------------------


async def _until(probe: Any) -> None:
    """Wait (bounded by WAIT_S) until `probe()` is true, probing every POLL_S."""
    deadline = time.monotonic() + WAIT_S
    while not await anyio.to_thread.run_sync(probe):
        assert time.monotonic() < deadline, "the condition did not come true in time"
        await anyio.sleep(POLL_S)  # polling a probe, bounded by WAIT_S


def _process(host: McpHost, pkg: str) -> dict[str, Any] | None:
    return next((p for p in host.processes() if p["pkg"] == pkg), None)


def _in_flight(host: McpHost, pkg: str) -> int:
    process = _process(host, pkg)
    return 0 if process is None else int(process["calls_in_flight"])


def _pid(host: McpHost, pkg: str) -> int | None:
    process = _process(host, pkg)
    return None if process is None else process["pid"]


def _plugin_log(host: McpHost, fixture: str) -> str:
    logs = sorted((host.config.parent / "data" / "state").rglob(f"*{fixture}*/*.log"))
    return "".join(p.read_text(encoding="utf-8", errors="replace") for p in logs)


async def test_stopping_the_host_ends_open_mcp_streams_instead_of_waiting_for_them(
    tmp_path: Path, wheelhouse: Path
) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "runtime.toml", tmp_path / "data", wheelhouse, port,
        server={"graceful_shutdown_s": 3 * STOP_BOUND_S},
    )  # fmt: skip
    host = McpHost(config, port, tmp_path / "server.log")
    host.start()
    try:
        async with (
            connect(host, mode="legacy", auth=False) as legacy,
            connect(host, auth=False) as modern,
            modern.listen(tools_list_changed=True),
        ):
            await legacy.list_tools()  # the session's GET stream is open by now
            host.signal(signal.SIGTERM)
            # well inside the grace period, which open streams would otherwise use up
            code = await anyio.to_thread.run_sync(host.wait, STOP_BOUND_S)
    finally:
        host.stop()
    assert code == 0
    assert '"level": "error"' not in host.log()


async def test_a_package_replaced_by_another_process_is_noticed_by_the_watch(
    mcp_host: McpHost, wheels: dict[str, Path], tmp_path: Path
) -> None:
    # a second host on the same data, as a second Hypercorn worker or a Redis worker would be
    port = free_port()
    config = _copy_config(mcp_host.config, tmp_path / "other.toml", port)
    other = McpHost(config, port, tmp_path / "other.log")
    other.start()
    try:
        async with connect(mcp_host) as client, client.listen(tools_list_changed=True) as events:
            await anyio.to_thread.run_sync(other.install, wheels["secret"])
            with anyio.fail_after(WAIT_S):
                event = await anext(aiter(events))
    finally:
        other.stop()
    assert type(event).__name__ == "ToolsListChanged"


def _copy_config(source: Path, target: Path, port: int) -> Path:
    text = source.read_text(encoding="utf-8")
    target.write_text(text.replace(f"port = {_port_of(text)}", f"port = {port}"), "utf-8")
    return target


def _port_of(config_text: str) -> int:
    line = next(x for x in config_text.splitlines() if x.startswith("port = "))
    return int(line.removeprefix("port = "))
