"""RpcPeer over the pipes of a real child process."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process

from hiagent_host.errors import PLUGIN_CRASHED, HostError
from hiagent_host.rpc import RpcPeer

CHILD = Path(__file__).with_name("child.py")


def peer_of(process: Process) -> RpcPeer:
    assert process.stdin is not None
    assert process.stdout is not None
    return RpcPeer(
        process.stdin, process.stdout, max_frame_bytes=1 << 20, stream_window=8, cancel_grace_s=1.0
    )


# A real process answers in milliseconds; this only bounds a hang.
STEP_S = 10.0
CALLS = 50


@pytest.mark.anyio
async def test_many_concurrent_calls_over_a_real_pipe_all_get_their_own_answer() -> None:
    results: dict[int, Any] = {}
    with anyio.fail_after(STEP_S):
        async with (
            await anyio.open_process([sys.executable, str(CHILD), "10"]) as process,
            peer_of(process) as peer,
        ):

            async def call(n: int) -> None:
                results[n] = await peer.call("echo", {"n": n, "pad": "é" * n}, timeout_s=STEP_S)

            async with anyio.create_task_group() as tg:
                for n in range(CALLS):
                    tg.start_soon(call, n)
            await peer.aclose()
            assert await process.wait() == 0
    assert results == {n: {"n": n, "pad": "é" * n} for n in range(CALLS)}


@pytest.mark.anyio
async def test_a_child_that_dies_fails_every_pending_call_promptly() -> None:
    errors: list[str] = []
    with anyio.fail_after(STEP_S):
        async with (
            await anyio.open_process([sys.executable, str(CHILD), "100"]) as process,
            peer_of(process) as peer,
        ):

            async def call(method: str) -> None:
                try:
                    await peer.call(method, {}, timeout_s=None)
                except HostError as exc:
                    errors.append(exc.code)

            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(call, "echo")  # held by the child, never answered
                tg.start_soon(call, "exit")
            assert await process.wait() == 3
            assert peer.closed.is_set()
    assert errors == [PLUGIN_CRASHED] * 4
