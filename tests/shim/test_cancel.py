"""Deadlines and cancellation: async tools are cancelled, sync tools abandoned, both answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from hiagent_host.rpc import DeadlineExceeded
from tests.shim.support import raw_shim, running_shim

# Deadlines these tests let expire on purpose.
DEADLINE_S = 0.2
# Short grace for the test that expects no acknowledgement (the loop is blocked).
SHORT_GRACE_S = 0.3


@pytest.mark.anyio
@pytest.mark.parametrize("tool", ["sleep_async", "sleep_sync"])
async def test_a_hanging_tool_past_its_deadline_is_cancelled_and_acknowledged(
    shim_python: Path, data_dir: Path, tool: str
) -> None:
    async with running_shim(shim_python, "hiagent-plugin-hang", data_dir) as shim:
        with pytest.raises(DeadlineExceeded) as caught:
            await shim.run_tool("hang", tool, {"seconds": 3600}, timeout_s=DEADLINE_S)
        assert caught.value.cancel_acknowledged is True
        assert await shim.run_tool("hang", "sleep_async", {"seconds": 0}) == "woke"
        assert await shim.run_tool("hang", "sleep_sync", {"seconds": 0}) == "woke"


@pytest.mark.anyio
async def test_a_tool_blocking_the_loop_cannot_acknowledge_the_cancel(
    shim_python: Path, data_dir: Path
) -> None:
    async with running_shim(
        shim_python, "hiagent-plugin-hang", data_dir, cancel_grace_s=SHORT_GRACE_S
    ) as shim:
        with pytest.raises(DeadlineExceeded) as caught:
            await shim.run_tool("hang", "block_loop", {"seconds": 60}, timeout_s=DEADLINE_S)
    assert caught.value.cancel_acknowledged is False


@pytest.mark.anyio
async def test_calls_are_served_while_others_hang(shim_python: Path, data_dir: Path) -> None:
    async with raw_shim(shim_python, "hiagent-plugin-hang", data_dir) as shim:
        await shim.initialize()
        for call_id, tool in enumerate(("sleep_async", "sleep_sync", "sleep_async"), start=1):
            params = {"plugin": "hang", "tool": tool, "input": {"seconds": 3600}}
            await shim.request(call_id, "run_tool", params)
        await shim.request(4, "ping")
        assert await shim.receive() == {"jsonrpc": "2.0", "id": 4, "result": "pong"}
        params = {"plugin": "hang", "tool": "sleep_sync", "input": {"seconds": 0}}
        await shim.request(5, "run_tool", params)
        assert await shim.receive() == {"jsonrpc": "2.0", "id": 5, "result": "woke"}
        for call_id in (1, 2, 3):
            await shim.send({"method": "$/cancelRequest", "params": {"id": call_id}})
        answers = [await shim.receive() for _ in range(3)]
    assert [a["id"] for a in answers] == [1, 2, 3]
    assert {a["error"]["data"]["code"] for a in answers} == {"Cancelled"}


@pytest.mark.anyio
async def test_cancel_request_answers_the_call_cancelled_499(
    shim_python: Path, data_dir: Path
) -> None:
    async with raw_shim(shim_python, "hiagent-plugin-hang", data_dir) as shim:
        await shim.initialize()
        params = {"plugin": "hang", "tool": "sleep_async", "input": {"seconds": 3600}}
        await shim.request(1, "run_tool", params)
        await shim.send({"method": "$/cancelRequest", "params": {"id": 1}})
        answer = await shim.receive()
    assert answer["id"] == 1
    assert answer["error"]["code"] == -32800
    assert answer["error"]["data"] == {"code": "Cancelled", "http_code": 499, "data": None}


@pytest.mark.anyio
async def test_a_cancel_for_an_answered_or_unknown_call_is_ignored(
    shim_python: Path, data_dir: Path
) -> None:
    async with raw_shim(shim_python, "hiagent-plugin-hang", data_dir) as shim:
        await shim.initialize()
        await shim.request(1, "ping")
        assert (await shim.receive())["id"] == 1
        await shim.send({"method": "$/cancelRequest", "params": {"id": 1}})
        await shim.send({"method": "$/cancelRequest", "params": {"id": 999}})
        await shim.send({"method": "$/cancelRequest", "params": {"id": "nonsense"}})
        await shim.request(2, "ping")
        assert await shim.receive() == {"jsonrpc": "2.0", "id": 2, "result": "pong"}


@pytest.mark.anyio
async def test_cancelling_a_sync_tool_says_its_thread_is_abandoned(
    shim_python: Path, data_dir: Path
) -> None:
    async with raw_shim(shim_python, "hiagent-plugin-hang", data_dir) as shim:
        await shim.initialize()
        params = {"plugin": "hang", "tool": "sleep_sync", "input": {"seconds": 3600}}
        await shim.request(1, "run_tool", params)
        await shim.stderr.wait_for("hang: sleep_sync started")
        await shim.send({"method": "$/cancelRequest", "params": {"id": 1}})
        answer = await shim.receive()
        await shim.stderr.wait_for("its tool thread is abandoned")
    assert answer["error"]["code"] == -32800
    assert answer["error"]["data"] == {
        "code": "Cancelled",
        "http_code": 499,
        "data": {"abandoned_thread": True},
    }
