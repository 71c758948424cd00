"""A child's pipes through one asyncio protocol, on asyncio's loop and on uvloop: stdout pushed
in order then its end, stdin held while the child does not read, stderr read whole through a
bounded buffer, the exit code kept; and a pool serving calls on uvloop."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import anyio
import anyio.lowlevel
import msgspec
import pytest

from hiagent_host.pool import pipes
from hiagent_host.rpc.framing import FrameWriter
from hiagent_host.rpc.messages import Request
from tests.pool.support import WAIT_S, Store, call, open_pool

pytestmark = pytest.mark.anyio

# More than a pipe (64 KiB) and the transport's high-water mark together hold.
PAYLOAD_BYTES: Final = 4 * 2**20
STDERR_BYTES: Final = 1 * 2**20
# How long a frame writer waits for a child that does not read before it reports a stall.
STALL_S: Final = 0.3
# Blocks SIGUSR1, says it is ready, reads nothing until SIGUSR1 comes, then counts its stdin.
HOLD: Final = """
import signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
sys.stdout.write("ready\\n"); sys.stdout.flush()
signal.sigwait({signal.SIGUSR1})
sys.stdout.write(f"{len(sys.stdin.buffer.read())}\\n")
"""


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return request.param


class Collected:
    """What a child wrote on its stdout, pushed, and whether its stdout has ended."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.lines = 0
        self.line = anyio.Event()
        self.ended = anyio.Event()

    def on_data(self, data: bytes) -> None:
        self.data += data
        if data.count(b"\n"):
            self.lines += data.count(b"\n")
            self.line.set()

    def on_eof(self) -> None:
        self.ended.set()


@asynccontextmanager
async def started(script: str, cwd: Path) -> AsyncIterator[tuple[pipes.ChildProcess, Collected]]:
    child = await pipes.spawn(
        [sys.executable, "-c", script], env=dict(os.environ), cwd=cwd, pass_fds=()
    )
    out = Collected()
    child.stdout.attach(out.on_data, out.on_eof)
    try:
        yield child, out
    finally:
        with anyio.fail_after(WAIT_S):
            await child.aclose()


async def test_stdout_reaches_the_attached_callback_in_order_then_its_end(tmp_path: Path) -> None:
    script = "import sys\nfor i in range(2000): print(f'line {i}', flush=True)"
    async with started(script, tmp_path) as (child, out):
        with anyio.fail_after(WAIT_S):
            await out.ended.wait()
            assert await child.wait() == 0
        assert out.data == b"".join(f"line {i}\n".encode() for i in range(2000))
        assert child.returncode == 0


async def test_send_waits_while_the_child_does_not_read_and_delivers_everything(
    tmp_path: Path,
) -> None:
    async with started(HOLD, tmp_path) as (child, out), anyio.create_task_group() as tg:
        sent = anyio.Event()

        async def send_all() -> None:
            await child.stdin.send(b"x" * PAYLOAD_BYTES)
            await child.stdin.aclose()
            sent.set()

        tg.start_soon(send_all)
        with anyio.fail_after(WAIT_S):
            await out.line.wait()
            await anyio.wait_all_tasks_blocked()
            assert not sent.is_set()  # the pipe is full and the transport paused
            os.kill(child.pid, signal.SIGUSR1)
            await sent.wait()
            await out.ended.wait()
        assert out.data == f"ready\n{PAYLOAD_BYTES}\n".encode()


async def test_a_frame_writer_hands_frames_to_the_pipe_at_once_and_reports_a_stall(
    tmp_path: Path,
) -> None:
    """While the pipe flows a flush returns without waiting; once the child stops reading it
    waits at most its stall time (another caller's frame joins the waiting write), and what
    the transport took still reaches the child."""
    async with started(HOLD, tmp_path) as (child, out):
        writer = FrameWriter(child.stdin, 2 * PAYLOAD_BYTES)
        small = Request(id=1, method="echo", params={"n": 1})
        large = Request(id=2, method="echo", params={"x": "x" * PAYLOAD_BYTES})
        with anyio.fail_after(WAIT_S):
            await out.line.wait()
            writer.queue(small)
            assert await writer.flush(stall_s=WAIT_S)  # the pipe flows: handed over at once
            writer.queue(large)
            stalled: list[bool] = []
            async with anyio.create_task_group() as tg:

                async def flush_large() -> None:
                    stalled.append(not await writer.flush(stall_s=STALL_S))

                tg.start_soon(flush_large)
                await anyio.wait_all_tasks_blocked()
                writer.queue(Request(id=3, method="echo", params={"n": 3}))
                assert await writer.flush(stall_s=WAIT_S)  # left to the waiting write
            assert stalled == [True]
            os.kill(child.pid, signal.SIGUSR1)
            await child.stdin.aclose()
            await out.ended.wait()
        taken = len(msgspec.json.encode(small)) + len(msgspec.json.encode(large)) + 2
        assert out.data == f"ready\n{taken}\n".encode()


async def test_stderr_is_read_whole_through_a_bounded_buffer_and_the_exit_code_kept(
    tmp_path: Path,
) -> None:
    script = f"import os, sys\nsys.stderr.buffer.write(b'e' * {STDERR_BYTES})\nos._exit(3)"
    async with started(script, tmp_path) as (child, _):
        received = 0
        with anyio.fail_after(WAIT_S):
            async for chunk in child.stderr:
                assert len(chunk) <= pipes.STDERR_CHUNK_BYTES
                assert set(chunk) == {ord("e")}
                received += len(chunk)
            assert await child.wait() == 3
        assert received == STDERR_BYTES


async def test_a_send_to_a_child_that_is_gone_is_a_broken_resource(tmp_path: Path) -> None:
    async with started("pass", tmp_path) as (child, out):
        with anyio.fail_after(WAIT_S):
            await out.ended.wait()
            await child.wait()
            with pytest.raises(anyio.BrokenResourceError):
                await send_until_refused(child)


async def send_until_refused(child: pipes.ChildProcess) -> None:
    """Send until the stdin pipe says it is broken (the first writes may still be taken into the
    transport's buffer before the loop learns the reader has gone)."""
    while True:
        await child.stdin.send(b"x" * 2**16)
        await anyio.lowlevel.checkpoint()


async def test_a_pool_serves_large_calls_both_ways(store: Store) -> None:
    text = "y" * (300 * 2**10)  # a request and an answer each several pipe-fulls long
    async with open_pool(store) as pool:
        assert await call(pool, store, "echo", "echo_async", text=text) == {"text": text}
        assert await call(pool, store, "echo", "echo", n=1) == {"n": 1}
