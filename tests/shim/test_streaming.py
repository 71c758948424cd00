"""Streaming calls: items then a final answer, flow control, early close, failures midway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hiagent_host.errors import RESULT_TOO_LARGE, STREAM_NOT_SUPPORTED, HostError
from tests.shim.support import STEP_S, Shim, raw_shim, running_shim


async def stream(
    shim: Shim, plugin: str, tool: str, tool_input: dict[str, Any], seen: list[Any]
) -> Any:
    """Run a streaming call to its end, appending items to `seen`; return the final result."""
    params = {"plugin": plugin, "tool": tool, "input": tool_input, "stream": True}
    async with shim.peer.stream("run_tool", params, timeout_s=STEP_S) as items:
        async for item in items:
            seen.append(item)
    return items.result


@pytest.mark.anyio
async def test_a_stream_sends_sse_events_strings_and_objects_then_the_count(
    shim_python: Path, data_dir: Path
) -> None:
    seen: list[Any] = []
    async with running_shim(shim_python, "hiagent-plugin-stream", data_dir) as shim:
        result = await stream(shim, "stream", "events", {"n": 2}, seen)
    assert seen == [
        {"event": "message", "data": "event 0", "id": "0"},
        "text 0",
        {"event": "message", "data": "event 1", "id": "1"},
        "text 1",
        {"done": True},
    ]
    assert result == {"items": 5}


@pytest.mark.anyio
async def test_many_items_pass_a_small_window_in_order(shim_python: Path, data_dir: Path) -> None:
    seen: list[Any] = []
    async with running_shim(
        shim_python, "hiagent-plugin-stream", data_dir, stream_window=2
    ) as shim:
        assert await stream(shim, "stream", "numbers", {"n": 500}, seen) == {"items": 500}
        sync_seen: list[Any] = []
        assert await stream(shim, "stream", "sync_numbers", {"n": 5}, sync_seen) == {"items": 5}
    assert seen == list(range(500))
    assert sync_seen == list(range(5))


@pytest.mark.anyio
async def test_the_child_never_runs_more_than_the_window_ahead_of_the_acks(
    shim_python: Path, data_dir: Path
) -> None:
    async with raw_shim(shim_python, "hiagent-plugin-stream", data_dir) as shim:
        await shim.initialize(stream_window=2)
        params = {"plugin": "stream", "tool": "numbers", "input": {"n": 6}, "stream": True}
        await shim.request(1, "run_tool", params)
        seqs = [(await shim.receive())["params"]["seq"] for _ in range(2)]
        await shim.request(2, "ping")
        assert await shim.receive() == {"jsonrpc": "2.0", "id": 2, "result": "pong"}

        await shim.send({"method": "$/streamAck", "params": {"id": 1, "seq": 1}})
        seqs += [(await shim.receive())["params"]["seq"] for _ in range(2)]
        await shim.request(3, "ping")
        assert (await shim.receive())["id"] == 3  # the window is shut again after seq 3

        await shim.send({"method": "$/streamAck", "params": {"id": 1, "seq": 3}})
        seqs += [(await shim.receive())["params"]["seq"] for _ in range(2)]
        assert await shim.receive() == {"jsonrpc": "2.0", "id": 1, "result": {"items": 6}}
    assert seqs == [0, 1, 2, 3, 4, 5]


@pytest.mark.anyio
async def test_a_tool_without_stream_support_fails_before_any_item(
    shim_python: Path, data_dir: Path
) -> None:
    seen: list[Any] = []
    async with running_shim(shim_python, "hiagent-plugin-stream", data_dir) as shim:
        with pytest.raises(HostError) as caught:
            await stream(shim, "stream", "plain", {}, seen)
    assert (caught.value.code, caught.value.http_status) == (STREAM_NOT_SUPPORTED, 400)
    assert seen == []


@pytest.mark.anyio
async def test_a_stream_failing_midway_keeps_its_items_and_raises_the_plugins_error(
    shim_python: Path, data_dir: Path
) -> None:
    seen: list[Any] = []
    async with running_shim(shim_python, "hiagent-plugin-stream", data_dir) as shim:
        with pytest.raises(HostError) as caught:
            await stream(shim, "stream", "fail_midway", {"n": 2}, seen)
    assert seen == [0, 1]
    assert (caught.value.code, caught.value.http_status) == ("StreamBroke", 502)
    assert caught.value.data == {"sent": 2}


@pytest.mark.anyio
async def test_leaving_a_stream_early_closes_the_plugins_generator(
    shim_python: Path, data_dir: Path
) -> None:
    params = {"plugin": "stream", "tool": "slow", "input": {"interval_s": 0.01}, "stream": True}
    async with running_shim(shim_python, "hiagent-plugin-stream", data_dir) as shim:
        async with shim.peer.stream("run_tool", params, timeout_s=STEP_S) as items:
            async for item in items:
                if item == 2:
                    break
        await shim.stderr.wait_for("slow stream closed after")
        assert await shim.peer.call("ping", timeout_s=STEP_S) == "pong"
        assert shim.peer.pending_count == 0


@pytest.mark.anyio
async def test_an_oversize_stream_item_ends_the_stream_with_result_too_large(
    shim_python: Path, data_dir: Path
) -> None:
    seen: list[Any] = []
    async with running_shim(
        shim_python, "hiagent-plugin-huge", data_dir, max_frame_bytes=4096
    ) as shim:
        with pytest.raises(HostError) as caught:
            await stream(shim, "huge", "blob_stream", {"size": 10_000, "before": 2}, seen)
        assert await shim.peer.call("ping", timeout_s=STEP_S) == "pong"
    assert seen == ["small 0", "small 1"]
    assert (caught.value.code, caught.value.http_status) == (RESULT_TOO_LARGE, 502)
    assert caught.value.data["limit"] == 4096
