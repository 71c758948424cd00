"""How a shim stops: stdin EOF, SIGTERM, `shutdown`; in-flight calls answer Cancelled first."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import pytest

from hiagent_host.rpc.framing import FrameReader
from tests.shim.support import STEP_S, RawShim, Stderr, kill_group, raw_shim, running_shim, shim_env

# A loop blocked by a plugin is ended by the shim's watchdog 2 s after stopping begins.
EXIT_WEDGED = 70


async def start_hanging_calls(shim: RawShim) -> None:
    """Calls 1 (async) and 2 (sync) hang; call 3 (ping) proves both were read."""
    for call_id, tool in ((1, "sleep_async"), (2, "sleep_sync")):
        params = {"plugin": "hang", "tool": tool, "input": {"seconds": 3600}}
        await shim.request(call_id, "run_tool", params)
    await shim.request(3, "ping")
    assert (await shim.receive())["id"] == 3


@pytest.mark.anyio
async def test_stdin_eof_cancels_in_flight_calls_and_exits_0(
    shim_python: Path, data_dir: Path
) -> None:
    async with raw_shim(shim_python, "hiagent-plugin-hang", data_dir) as shim:
        await shim.initialize()
        await start_hanging_calls(shim)
        await shim.close_stdin()
        answers = [await shim.receive() for _ in range(2)]
        assert await shim.exit_status() == 0
        await shim.stderr.wait_for("stopping: stdin closed")
    assert sorted(a["id"] for a in answers) == [1, 2]
    assert {a["error"]["data"]["code"] for a in answers} == {"Cancelled"}


@pytest.mark.anyio
async def test_sigterm_cancels_in_flight_calls_and_exits_0(
    shim_python: Path, data_dir: Path
) -> None:
    async with raw_shim(shim_python, "hiagent-plugin-hang", data_dir) as shim:
        await shim.initialize()
        await start_hanging_calls(shim)
        shim.process.send_signal(signal.SIGTERM)
        answers = [await shim.receive() for _ in range(2)]
        assert await shim.exit_status() == 0
    assert {a["error"]["data"]["code"] for a in answers} == {"Cancelled"}
    assert "received SIGTERM" in shim.stderr.text


@pytest.mark.anyio
async def test_shutdown_answers_after_cancelling_what_is_in_flight(
    shim_python: Path, data_dir: Path
) -> None:
    async with raw_shim(shim_python, "hiagent-plugin-hang", data_dir) as shim:
        await shim.initialize()
        await start_hanging_calls(shim)
        await shim.request(4, "shutdown")
        answers = [await shim.receive() for _ in range(3)]
        assert await shim.exit_status() == 0
    assert [a["id"] for a in answers][-1] == 4
    assert answers[-1]["result"] is None
    assert {a["error"]["data"]["code"] for a in answers[:2]} == {"Cancelled"}


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["eof", "sigterm"])
async def test_a_loop_blocked_by_a_plugin_still_exits_by_the_watchdog(
    shim_python: Path, data_dir: Path, how: str
) -> None:
    async with raw_shim(shim_python, "hiagent-plugin-hang", data_dir) as shim:
        await shim.initialize()
        params = {"plugin": "hang", "tool": "block_loop", "input": {"seconds": 3600}}
        await shim.request(1, "run_tool", params)
        await shim.stderr.wait_for("hang: block_loop started")
        if how == "eof":
            await shim.close_stdin()
        else:
            shim.process.send_signal(signal.SIGTERM)
        assert await shim.exit_status() == EXIT_WEDGED
        await shim.stderr.wait_for("did not stop within")


@pytest.mark.anyio
async def test_a_plugin_ignoring_sigterm_keeps_serving_until_stdin_closes(
    shim_python: Path, data_dir: Path
) -> None:
    async with running_shim(shim_python, "hiagent-plugin-ignore-sigterm", data_dir) as shim:
        shim.process.send_signal(signal.SIGTERM)
        assert await shim.run_tool("ignore_sigterm", "still_here") == "still here"
        await shim.peer.aclose()
        assert await shim.exit_status() == 0


@pytest.mark.anyio
async def test_a_shim_whose_stderr_is_broken_still_answers_and_exits_on_stdin_eof(
    shim_python: Path, data_dir: Path
) -> None:
    """The host died: every diagnostic write fails with EPIPE, and none may stop the shim."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads stderr: each write there raises BrokenPipeError
    try:
        process = await anyio.open_process(
            [str(shim_python), "-m", "hiagent_shim"],
            env=shim_env("hiagent-plugin-exit-mid-call", data_dir),
            stderr=write_end,
            start_new_session=True,
        )
    finally:
        os.close(write_end)
    assert process.stdout is not None
    shim = RawShim(process, Stderr(), FrameReader(process.stdout, 1 << 30))
    try:
        await shim.initialize()
        slow = {"plugin": "exit_mid_call", "tool": "slow", "input": {"seconds": 3600}}
        await shim.request(1, "run_tool", slow)
        await shim.request(2, "run_tool", {"plugin": "exit_mid_call", "tool": "missing"})
        missing = await shim.receive()  # its failure is noted on stderr first
        await shim.close_stdin()
        cancelled = await shim.receive()  # "stopping" is noted on stderr first
        with anyio.fail_after(STEP_S):
            assert await process.wait() == 0
    finally:
        kill_group(process)
        with anyio.CancelScope(shield=True), anyio.fail_after(STEP_S):
            await process.aclose()
    assert (missing["id"], missing["error"]["data"]["code"]) == (2, "ToolNotFound")
    assert (cancelled["id"], cancelled["error"]["data"]["code"]) == (1, "Cancelled")
