"""The shim's end of the wire: private stdio fds, newline framing, whole-frame writes.

`take_stdio()` runs before any plugin code is imported. It keeps private duplicates of fd 0
and fd 1 for the wire, points fd 1 (and `sys.stdout`) at stderr and fd 0 (and `sys.stdin`) at
/dev/null, so nothing a plugin, its libraries or its subprocesses print or read can touch a
frame. Frames are one JSON object per line; a line longer than the frame limit is discarded in
bounded memory and reported with the id sniffed from its first bytes.
"""

from __future__ import annotations

import io
import os
import re
import sys
import threading
from dataclasses import dataclass
from typing import Final

# Before `initialize` names the host's limit, frames up to this size are accepted.
DEFAULT_MAX_FRAME_BYTES: Final = 32 * 1024 * 1024
# One read from the wire; a pipe rarely delivers more at once.
READ_CHUNK_BYTES: Final = 64 * 1024
# How much of an over-size line is kept to read its id from (`{"jsonrpc":"2.0","id":N,`).
SNIFF_BYTES: Final = 128

_ID_PREFIX: Final = re.compile(rb'\A\s*\{\s*"jsonrpc"\s*:\s*"2\.0"\s*,\s*"id"\s*:\s*(-?\d{1,18})\b')


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


class LineReader:
    """Split a byte stream into lines of at most `max_frame_bytes` (blocking reads)."""

    def __init__(self, fd: int, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._fd = fd
        self.max_frame_bytes = max_frame_bytes  # raised by `initialize`; read per chunk
        self._buffer = bytearray()
        self._eof = False

    def read(self) -> bytes | OversizeLine | None:
        """The next line (without its newline), an over-size report, or None at EOF."""
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end >= 0 and end <= self.max_frame_bytes:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            if end > self.max_frame_bytes or len(self._buffer) > self.max_frame_bytes:
                return self._discard()
            if self._eof:
                if self._buffer:  # a last line without its newline is still a frame
                    line = bytes(self._buffer)
                    self._buffer.clear()
                    return line
                return None
            start = len(self._buffer)
            self._fill()

    def _fill(self) -> None:
        chunk = os.read(self._fd, READ_CHUNK_BYTES)
        if chunk:
            self._buffer += chunk
        else:
            self._eof = True

    def _discard(self) -> OversizeLine:
        """Drop the current line up to its newline, keeping only its first bytes."""
        prefix = bytes(self._buffer[:SNIFF_BYTES])
        size = 0
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                size += end
                del self._buffer[: end + 1]
                return OversizeLine(id=sniff_id(prefix), size=size)
            size += len(self._buffer)
            self._buffer.clear()
            if self._eof:
                return OversizeLine(id=sniff_id(prefix), size=size)
            self._fill()


class WireWriter:
    """Writes whole frames to the wire fd; one lock serialises every writer thread."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    def write(self, frame: bytes) -> None:
        """Write `frame` and its newline, all of it, before any other frame."""
        data = memoryview(frame + b"\n")
        with self._lock:
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
