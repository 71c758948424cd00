"""RpcPeer over the pipes of a real child process."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import msgspec
import pytest
from anyio.abc import Process

from hiagent_host.errors import PLUGIN_CRASHED, HostError
from hiagent_host.rpc import RpcPeer
from hiagent_host.rpc.framing import FrameWriter
from hiagent_host.rpc.messages import Request

CHILD = Path(__file__).with_name("child.py")


def peer_of(process: Process, *, busy_poll_us: int = 0) -> RpcPeer:
    assert process.stdin is not None
    assert process.stdout is not None
    return RpcPeer(
        process.stdin, process.stdout, max_frame_bytes=1 << 20, stream_window=8,
        cancel_grace_s=1.0, busy_poll_us=busy_poll_us,
    )  # fmt: skip


# A child that never reads its stdin (the pipe fills up, or holds what it was sent).
NEVER_READS = [sys.executable, "-c", "import time; time.sleep(60)"]
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


@pytest.mark.anyio
async def test_frames_to_a_child_reach_its_pipe_whole_and_in_order() -> None:
    with anyio.fail_after(STEP_S):
        async with await anyio.open_process([sys.executable, str(CHILD), "1"]) as process:
            assert process.stdin is not None
            writer = FrameWriter(process.stdin, 1 << 20)
            for n in range(3):
                writer.queue(Request(id=n, method="echo", params={"n": n}))
            assert await writer.flush(stall_s=STEP_S)
            await writer.aclose()
            assert process.stdout is not None
            answers = b""
            async for chunk in process.stdout:
                answers += chunk
    assert [msgspec.json.decode(line)["id"] for line in answers.splitlines()] == [0, 1, 2]


@pytest.mark.anyio
async def test_a_child_that_stops_reading_stalls_a_write_which_is_reported() -> None:
    with anyio.fail_after(STEP_S):
        async with await anyio.open_process(NEVER_READS) as process:
            assert process.stdin is not None
            writer = FrameWriter(process.stdin, 1 << 20)
            writer.queue(Request(id=1, method="echo", params={"pad": "x" * 400_000}))
            assert await writer.flush(stall_s=0.2) is False  # more than the pipe takes
            process.kill()


@pytest.mark.anyio
async def test_a_write_to_a_child_that_has_exited_raises_broken_then_closed() -> None:
    with anyio.fail_after(STEP_S):
        async with await anyio.open_process([sys.executable, "-c", "pass"]) as process:
            assert process.stdin is not None
            writer = FrameWriter(process.stdin, 1 << 20)
            assert await process.wait() == 0
            with pytest.raises(anyio.BrokenResourceError):
                await write_until_refused(writer)
            await writer.aclose()
            with pytest.raises(anyio.ClosedResourceError):
                await write_until_refused(writer)


async def write_until_refused(writer: FrameWriter) -> None:
    """Write frames until the stream refuses one (the first may still reach a pipe's buffer)."""
    for n in range(100):
        writer.queue(Request(id=n, method="echo"))
        await writer.flush(stall_s=STEP_S)
        await anyio.sleep(0.01)  # the loop notices the closed pipe


class HeldStream(anyio.abc.ByteSendStream):
    """A child's stdin that counts the writes made to it and holds the first one until
    `release` is set (a pipe that is slow to take it)."""

    def __init__(self, inner: anyio.abc.ByteSendStream) -> None:
        self.inner = inner
        self.sends: list[bytes] = []
        self.holding = anyio.Event()
        self.release = anyio.Event()

    async def send(self, item: bytes) -> None:
        self.sends.append(item)
        if len(self.sends) == 1:
            self.holding.set()
            await self.release.wait()
        await self.inner.send(item)

    async def send_eof(self) -> None:
        await self.inner.aclose()

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.anyio
async def test_frames_flushed_while_a_write_is_under_way_leave_together_with_the_next() -> None:
    with anyio.fail_after(STEP_S):
        async with await anyio.open_process([sys.executable, str(CHILD), "1"]) as process:
            assert process.stdin is not None
            stdin = HeldStream(process.stdin)
            writer = FrameWriter(stdin, 1 << 20)

            async def send(n: int) -> None:
                writer.queue(Request(id=n, method="echo", params={"n": n}))
                assert await writer.flush(stall_s=STEP_S)

            async with anyio.create_task_group() as tg:
                tg.start_soon(send, 0)
                await stdin.holding.wait()
                for n in range(1, CALLS):  # each returns at once: the writing task takes it
                    await send(n)
                stdin.release.set()
            await writer.aclose()
            assert process.stdout is not None
            answers = b""
            async for chunk in process.stdout:
                answers += chunk
    assert [len(sent.splitlines()) for sent in stdin.sends] == [1, CALLS - 1]
    ids = [msgspec.json.decode(line)["id"] for line in answers.splitlines()]
    assert ids == list(range(CALLS))
