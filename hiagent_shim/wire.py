"""The shim's end of the wire: private stdio fds, newline framing on the event loop, writes.

`take_stdio()` runs before any plugin code is imported. It keeps private duplicates of fd 0
and fd 1 for the wire, points fd 1 (and `sys.stdout`) at stderr and fd 0 (and `sys.stdin`) at
/dev/null, so nothing a plugin, its libraries or its subprocesses print or read can touch a
frame. Frames are one JSON object per line, read on the event loop itself; a line longer than
the frame limit is discarded in bounded memory and reported with the id sniffed from its first
bytes. Each frame leaves in one `os.write` as soon as it is made (frames queue only behind a
full pipe).
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import select
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

# Before `initialize` names the host's limit, frames up to this size are accepted.
DEFAULT_MAX_FRAME_BYTES: Final = 32 * 1024 * 1024
# One read from the wire; a pipe rarely delivers more at once.
READ_CHUNK_BYTES: Final = 64 * 1024
# How much of an over-size line is kept to read its id from (`{"jsonrpc":"2.0","id":N,`).
SNIFF_BYTES: Final = 128

_ID_PREFIX: Final = re.compile(rb'\A\s*\{\s*"jsonrpc"\s*:\s*"2\.0"\s*,\s*"id"\s*:\s*(-?\d{1,18})\b')
# poll() always reports these, even for an fd registered with no events of interest.
_HANGUP: Final = select.POLLHUP | select.POLLERR | select.POLLNVAL


@dataclass(frozen=True)
class Stdio:
    """The private wire fds, taken from fd 0 and fd 1 before plugins could use them."""

    wire_in: int
    wire_out: int


def take_stdio() -> Stdio:
    """Keep fd 0/1 privately for the wire; leave fd 0 on /dev/null and fd 1 on stderr."""
    sys.stdout.flush()
    wire_in = os.dup(0)  # os.dup fds are non-inheritable: subprocesses never hold the wire
    wire_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - lives as long as the process
    sys.stdout = io.TextIOWrapper(
        open(1, "wb", buffering=0, closefd=False),  # noqa: SIM115 - lives as long as the process
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )
    return Stdio(wire_in=wire_in, wire_out=wire_out)


@dataclass(frozen=True)
class OversizeLine:
    """A line longer than the frame limit, discarded; `id` if its prefix names one."""

    id: int | None
    size: int


def sniff_id(prefix: bytes) -> int | None:
    """The request id at the start of a frame written as `{"jsonrpc":"2.0","id":N,...`."""
    match = _ID_PREFIX.match(prefix)
    return int(match.group(1)) if match else None


Line = bytes | OversizeLine


class LineSplitter:
    """Cut a byte stream, fed in chunks, into lines of at most `max_frame_bytes`.

    Holds at most the limit plus one chunk: an over-size line is dropped as it comes, keeping
    only its first `SNIFF_BYTES`, and reported once its newline (or the end) arrives.
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes  # raised by `initialize`
        self._partial = bytearray()  # the start of a line whose newline has not come yet
        self._dropping: bytes | None = None  # the prefix of an over-size line being dropped
        self._dropped = 0

    def feed(self, chunk: bytes) -> list[Line]:
        """The lines (without newlines) that `chunk` completes, in order."""
        lines: list[Line] = []
        if self._dropping is not None:
            end = chunk.find(b"\n")
            if end < 0:
                self._dropped += len(chunk)
                return lines
            lines.append(OversizeLine(id=sniff_id(self._dropping), size=self._dropped + end))
            self._dropping = None
            chunk = chunk[end + 1 :]
        end = chunk.find(b"\n")
        if end < 0:
            self._hold(chunk)
            return lines
        if self._partial:
            self._partial += chunk[:end]
            lines.append(self._line(bytes(self._partial)))
            self._partial.clear()
            chunk = chunk[end + 1 :]
        *complete, rest = chunk.split(b"\n")
        lines.extend(self._line(line) for line in complete)
        self._hold(rest)
        return lines

    def end(self) -> list[Line]:
        """At EOF: a last line without its newline (it is still a frame), if any."""
        if self._dropping is not None:
            line: Line = OversizeLine(id=sniff_id(self._dropping), size=self._dropped)
            self._dropping = None
            return [line]
        if self._partial:
            last = self._line(bytes(self._partial))
            self._partial.clear()
            return [last]
        return []

    def _line(self, line: bytes) -> Line:
        if len(line) <= self.max_frame_bytes:
            return line
        return OversizeLine(id=sniff_id(line[:SNIFF_BYTES]), size=len(line))

    def _hold(self, part: bytes) -> None:
        self._partial += part
        if len(self._partial) > self.max_frame_bytes:
            self._dropping = bytes(self._partial[:SNIFF_BYTES])
            self._dropped = len(self._partial)
            self._partial.clear()


class WireReader:
    """Reads the wire on the event loop: each line goes to `on_line`, the end to `on_end`.

    A daemon thread sleeps in `poll()` until the host closes the wire and then calls
    `on_hangup` from that thread: the one sign of EOF that still comes while a plugin blocks
    the loop (the shim arms its exit watchdog there). It costs nothing per frame. An fd the
    loop cannot watch (a regular file, /dev/null) is read by a thread instead.
    """

    def __init__(
        self,
        fd: int,
        loop: asyncio.AbstractEventLoop,
        *,
        on_line: Callable[[Line], None],
        on_end: Callable[[str], None],
        on_hangup: Callable[[], None],
    ) -> None:
        self._fd = fd
        self._loop = loop
        self._on_line = on_line
        self._on_end = on_end
        self._on_hangup = on_hangup
        self.splitter = LineSplitter()
        self._ended = False

    def start(self) -> None:
        """Begin reading; lines are delivered from the loop's callbacks."""
        os.set_blocking(self._fd, False)
        try:
            self._loop.add_reader(self._fd, self._readable)
        except PermissionError:  # epoll refuses regular files and some devices
            os.set_blocking(self._fd, True)
            watch, name = self._read_blocking, "hiagent-wire-in"
        else:
            watch, name = self._watch_hangup, "hiagent-wire-hup"
        threading.Thread(target=watch, name=name, daemon=True).start()

    def _readable(self) -> None:
        try:
            chunk = os.read(self._fd, READ_CHUNK_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._end(f"stdin failed: {exc}")
            return
        self._chunk(chunk)

    def _chunk(self, chunk: bytes) -> None:
        if self._ended:
            return
        if not chunk:
            for line in self.splitter.end():
                self._on_line(line)
            self._end("stdin closed")
            return
        for line in self.splitter.feed(chunk):
            self._on_line(line)

    def _end(self, reason: str) -> None:
        self._ended = True
        self._loop.remove_reader(self._fd)
        self._on_end(reason)

    def _watch_hangup(self) -> None:
        poller = select.poll()
        poller.register(self._fd, 0)
        while not any(events & _HANGUP for _, events in poller.poll()):
            pass  # a spurious wake-up
        self._on_hangup()

    def _read_blocking(self) -> None:
        """The fallback reader thread: hand each chunk to the loop; at EOF, say so."""
        while True:
            try:
                chunk = os.read(self._fd, READ_CHUNK_BYTES)
            except OSError as exc:
                self._loop.call_soon_threadsafe(self._end, f"stdin failed: {exc}")
                break
            self._loop.call_soon_threadsafe(self._chunk, chunk)
            if not chunk:
                break
        self._on_hangup()


class WireWriter:
    """Writes each frame whole, in order, as soon as it is queued.

    A frame leaves at once (one `os.write`), not at the end of the loop's turn: the host then
    starts on the first answers of a burst while the shim still works on the rest, so the two
    processes overlap instead of taking turns (bench/pool.py, 64 calls in flight). Only while
    the pipe is full do frames queue up; they leave together once it drains.

    Frames are written from the loop's thread only. A wire fd that is (or became) non-blocking
    is waited on with the loop; a failed write reports to `on_error` once and drops the rest.
    """

    def __init__(
        self, fd: int, loop: asyncio.AbstractEventLoop, on_error: Callable[[OSError], None]
    ) -> None:
        self._fd = fd
        self._loop = loop
        self._on_error = on_error
        self._buffer = bytearray()
        self._waiting = False  # the fd is full: the loop calls `_flush` once it is writable
        self._broken = False

    def write(self, frame: bytes) -> None:
        """Write `frame` and its newline now; it leaves whole, after every frame written before
        (behind them when the pipe is full)."""
        if self._broken:
            return
        self._buffer += frame
        self._buffer += b"\n"
        if not self._waiting:
            self._flush()

    def drain(self) -> None:
        """Write everything queued now, waiting for the fd if need be (the process is ending)."""
        if self._waiting:
            self._loop.remove_writer(self._fd)
            self._waiting = False
        while self._buffer and not self._broken:
            self._flush()
            if self._waiting:
                self._loop.remove_writer(self._fd)
                self._waiting = False
                select.select([], [self._fd], [])

    def _flush(self) -> None:
        try:
            while self._buffer:
                written = os.write(self._fd, self._buffer)
                del self._buffer[:written]
        except BlockingIOError:
            if not self._waiting:
                self._waiting = True
                self._loop.add_writer(self._fd, self._writable)
        except OSError as exc:
            self._broken = True
            self._buffer.clear()
            self._on_error(exc)

    def _writable(self) -> None:
        self._loop.remove_writer(self._fd)
        self._waiting = False
        self._flush()
