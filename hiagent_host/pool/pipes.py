"""A child process behind one asyncio `SubprocessProtocol`: stdout pushed, stdin, stderr streams.

`spawn` starts the child with `loop.subprocess_exec` (asyncio's and uvloop's alike) and this
module's protocol. What the child writes on its stdout is handed, in the very callback that
receives it (`pipe_data_received`), to whoever `attach`ed to `ChildProcess.stdout` (the
`RpcPeer`, which cuts frames and resolves the waiting calls there): no reader task, so an
answer wakes its caller one turn of the loop earlier than a task reading a stream would.
Frames for the child go straight to the stdin pipe's transport; while the transport's buffer
is over its high-water mark (`pause_writing`), `send` waits for it to drain (`resume_writing`).
The stderr pipe is an anyio byte stream holding at most `STDERR_BUFFER_BYTES` unread (reading
pauses beyond), as the stream asyncio would make for it does. Only public asyncio interfaces.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final, cast

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream

# Unread stderr the host holds before it stops reading the pipe (the child then blocks on it).
STDERR_BUFFER_BYTES: Final = 64 * 1024
# The largest chunk `ChildStderr.receive` returns by default.
STDERR_CHUNK_BYTES: Final = 64 * 1024
STDIN, STDOUT, STDERR = 0, 1, 2


class ChildStdin(ByteSendStream):
    """The child's stdin: writes go to the pipe transport; `send` waits while it is paused."""

    def __init__(self, protocol: _ChildProtocol) -> None:
        self._protocol = protocol
        self._closed = False
        self._lost = False
        self._lost_error: BaseException | None = None
        self._drained: anyio.Event | None = None  # set at `resume_writing`, None while flowing

    async def send(self, item: bytes) -> None:
        if not self.write_now(item):
            await self.drained()

    def write_now(self, data: bytes) -> bool:
        """Hand `data` to the pipe at once; False if it is now over its high-water mark
        (`drained` waits for it)."""
        if self._closed:
            raise anyio.ClosedResourceError
        transport = self._transport()
        if self._lost or transport is None or transport.is_closing():
            raise anyio.BrokenResourceError from self._lost_error
        transport.write(data)
        return self._drained is None

    async def drained(self) -> None:
        """Wait while the pipe's buffer is over its high-water mark."""
        while self._drained is not None and not self._lost:
            await self._drained.wait()
        if self._lost:
            raise anyio.BrokenResourceError from self._lost_error

    async def aclose(self) -> None:
        self._closed = True
        transport = self._transport()
        if transport is not None:
            transport.close()

    def _transport(self) -> asyncio.WriteTransport | None:
        return cast("asyncio.WriteTransport | None", self._protocol.pipe(STDIN))

    def pause(self) -> None:
        if self._drained is None:
            self._drained = anyio.Event()

    def resume(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None:
            drained.set()

    def lost(self, exc: BaseException | None) -> None:
        self._lost, self._lost_error = True, exc
        self.resume()


class ChildStdout:
    """The child's stdout, pushed: `attach(on_data, on_eof)` gets every chunk as it arrives
    (anything that came before is delivered at once) and the end of the pipe."""

    def __init__(self, protocol: _ChildProtocol) -> None:
        self._protocol = protocol
        self._early: list[bytes] = []
        self._eof = False
        self._on_data: Callable[[bytes], None] | None = None
        self._on_eof: Callable[[], None] | None = None

    def attach(self, on_data: Callable[[bytes], None], on_eof: Callable[[], None]) -> None:
        self._on_data, self._on_eof = on_data, on_eof
        early, self._early = self._early, []
        for data in early:
            on_data(data)
        if self._eof:
            on_eof()

    async def aclose(self) -> None:
        """Stop reading: nothing more is delivered."""
        self._on_data = self._on_eof = None
        transport = self._protocol.pipe(STDOUT)
        if transport is not None:
            transport.close()

    def feed(self, data: bytes) -> None:
        if self._on_data is not None:
            self._on_data(data)
        elif not self._eof:
            self._early.append(data)

    def end(self) -> None:
        self._eof = True
        if self._on_eof is not None:
            self._on_eof()


class ChildStderr(ByteReceiveStream):
    """The child's stderr as a byte stream, buffering at most `STDERR_BUFFER_BYTES`."""

    def __init__(self, protocol: _ChildProtocol) -> None:
        self._protocol = protocol
        self._buffer = bytearray()
        self._eof = False
        self._closed = False
        self._paused = False
        self._arrived: anyio.Event | None = None

    async def receive(self, max_bytes: int = STDERR_CHUNK_BYTES) -> bytes:
        while not self._buffer:
            if self._closed:
                raise anyio.ClosedResourceError
            if self._eof:
                raise anyio.EndOfStream
            self._arrived = anyio.Event()
            await self._arrived.wait()
        data = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        if self._paused and len(self._buffer) < STDERR_BUFFER_BYTES:
            self._paused = False
            transport = self._read_transport()
            if transport is not None and not transport.is_closing():
                transport.resume_reading()
        return data

    async def aclose(self) -> None:
        self._closed = True
        self._buffer.clear()
        self._wake()
        transport = self._protocol.pipe(STDERR)
        if transport is not None:
            transport.close()

    def _read_transport(self) -> asyncio.ReadTransport | None:
        return cast("asyncio.ReadTransport | None", self._protocol.pipe(STDERR))

    def feed(self, data: bytes) -> None:
        if self._closed:
            return
        self._buffer += data
        self._wake()
        if not self._paused and len(self._buffer) >= STDERR_BUFFER_BYTES:
            transport = self._read_transport()
            if transport is not None and not transport.is_closing():
                self._paused = True
                transport.pause_reading()

    def end(self) -> None:
        self._eof = True
        self._wake()

    def _wake(self) -> None:
        arrived, self._arrived = self._arrived, None
        if arrived is not None:
            arrived.set()


class _ChildProtocol(asyncio.SubprocessProtocol):
    """Routes the subprocess transport's callbacks to the three pipes and the exit."""

    def __init__(self) -> None:
        self.transport: asyncio.SubprocessTransport | None = None
        self.stdin = ChildStdin(self)
        self.stdout = ChildStdout(self)
        self.stderr = ChildStderr(self)
        self.exited = anyio.Event()

    def pipe(self, fd: int) -> asyncio.BaseTransport | None:
        return None if self.transport is None else self.transport.get_pipe_transport(fd)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.SubprocessTransport", transport)

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        if isinstance(data, str):  # text mode is never asked for
            data = data.encode()
        if fd == STDOUT:
            self.stdout.feed(data)
        elif fd == STDERR:
            self.stderr.feed(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == STDIN:
            self.stdin.lost(exc)
        elif fd == STDOUT:
            self.stdout.end()
        elif fd == STDERR:
            self.stderr.end()

    def pause_writing(self) -> None:
        self.stdin.pause()

    def resume_writing(self) -> None:
        self.stdin.resume()

    def process_exited(self) -> None:
        self.exited.set()


class ChildProcess:
    """A started child: `pid`, the three pipes, `wait()` for its exit, `returncode`, `aclose()`."""

    def __init__(self, transport: asyncio.SubprocessTransport, protocol: _ChildProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self.pid: int = transport.get_pid()
        self.stdin: ChildStdin = protocol.stdin
        self.stdout: ChildStdout = protocol.stdout
        self.stderr: ChildStderr = protocol.stderr

    @property
    def returncode(self) -> int | None:
        return self._transport.get_returncode()

    async def wait(self) -> int:
        """Until the process exits; its return code (negative: the signal that ended it)."""
        await self._protocol.exited.wait()
        returncode = self._transport.get_returncode()
        if returncode is None:
            raise RuntimeError("the plugin process exited without a return code")
        return returncode

    async def aclose(self) -> None:
        """Close the pipes, wait for the exit and release the transport (which kills a child
        still running if the wait is cancelled)."""
        try:
            await self.stdin.aclose()
            await self.stdout.aclose()
            await self.stderr.aclose()
            await self.wait()
        finally:
            self._transport.close()


async def spawn(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, pass_fds: Sequence[int]
) -> ChildProcess:
    """Start `argv` in a new session with pipes on stdin, stdout and stderr."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        _ChildProtocol,
        *argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
        pass_fds=tuple(pass_fds),
    )
    return ChildProcess(transport, protocol)
