"""Newline-delimited JSON frames over anyio byte streams: bounded reads, batched checked writes.

A frame is one UTF-8 JSON object followed by `\\n`; JSON never needs a raw newline inside.
The reader never holds more than `max_frame_bytes` plus one read chunk: a longer line is
discarded up to its newline and reported as an `OversizeFrame`, carrying the call id read
from the frame's first bytes (the shim writes every frame of a call so that it starts with
that id; see docs/protocol.md). The writer encodes each frame straight into one outbox and
writes everything queued in one go.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

import anyio
import anyio.lowlevel
import msgspec
from anyio.abc import ByteReceiveStream, ByteSendStream

from hiagent_host.rpc.errors import FrameTooLarge

# One read from the child's stdout; larger reads buy nothing on a pipe.
READ_CHUNK_BYTES: Final = 64 * 1024
# How much of an over-size frame is kept to read its call id from.
SNIFF_BYTES: Final = 128

# `{"jsonrpc":"2.0","id":N,` (a response) or `{"jsonrpc":"2.0","method":"$/stream",
# "params":{"id":N,` (a stream item): either way the frame belongs to call N.
_CALL_ID: Final = re.compile(
    rb'\A\{"jsonrpc":"2\.0",(?:"id":(\d{1,18})|"method":"\$/stream","params":\{"id":(\d{1,18}))[,}]'
)


@dataclass(frozen=True)
class OversizeFrame:
    """A frame longer than the limit, discarded unread; `id` is its call when readable.

    `stream_item` tells a `$/stream` item (the call goes on) from a response (its end).
    """

    id: int | None
    size: int
    stream_item: bool = False


def sniff_call_id(prefix: bytes) -> tuple[int | None, bool]:
    """The call a frame belongs to (or None), and whether the frame is a stream item."""
    match = _CALL_ID.match(prefix)
    if match is None:
        return None, False
    response, item = match.groups()
    return (int(response), False) if response else (int(item), True)


def _oversize(prefix: bytes, size: int) -> OversizeFrame:
    call_id, stream_item = sniff_call_id(prefix)
    return OversizeFrame(id=call_id, size=size, stream_item=stream_item)


class FrameSplitter:
    """Cuts bytes into frames as they arrive, holding at most the limit plus what was fed.

    `feed` returns the frames its bytes completed; `end` (at EOF) the last frame without its
    newline, if any. A line over the limit is dropped as it streams by, reported once its
    newline (or EOF) comes as an `OversizeFrame` with the call id sniffed from its start.
    """

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()  # never holds a newline between calls
        self._dropping: bytes | None = None  # the start of an over-size line being dropped
        self._dropped = 0

    def feed(self, data: bytes) -> list[bytes | OversizeFrame]:
        frames: list[bytes | OversizeFrame] = []
        if self._dropping is not None:
            end = data.find(b"\n")
            if end < 0:
                self._dropped += len(data)
                return frames
            frames.append(_oversize(self._dropping, self._dropped + end))
            self._dropping = None
            data = data[end + 1 :]
        buffer = self._buffer
        buffer += data
        last = buffer.rfind(b"\n")
        if last >= 0:
            limit = self.max_frame_bytes
            for line in bytes(buffer[:last]).split(b"\n"):
                frames.append(
                    line if len(line) <= limit else _oversize(line[:SNIFF_BYTES], len(line))
                )
            del buffer[: last + 1]
        if len(buffer) > self.max_frame_bytes:
            self._dropping, self._dropped = bytes(buffer[:SNIFF_BYTES]), len(buffer)
            buffer.clear()
        return frames

    def end(self) -> list[bytes | OversizeFrame]:
        if self._dropping is not None:
            frame: bytes | OversizeFrame = _oversize(self._dropping, self._dropped)
            self._dropping = None
            return [frame]
        if not self._buffer:
            return []
        last = bytes(self._buffer)
        self._buffer.clear()
        return [last]


class PushedBytes(Protocol):
    """A byte source that calls back as data arrives (an asyncio protocol's pipe), instead of
    being read by a task: `attach` gives it the callbacks, `aclose` stops it."""

    def attach(self, on_data: Callable[[bytes], None], on_eof: Callable[[], None]) -> None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class WritesAtOnce(Protocol):
    """A byte sink that takes a write at once (an asyncio transport's pipe), as well as being
    a `ByteSendStream`: `write_now` hands the bytes over without waiting and says whether the
    sink still flows (False: its buffer is over its high-water mark, and `drained` waits until
    it is not)."""

    def write_now(self, data: bytes) -> bool: ...

    async def drained(self) -> None: ...


class FrameReader:
    """Reads frames from `stream`; `receive` and `receive_many` raise `anyio.EndOfStream` at
    the end."""

    def __init__(self, stream: ByteReceiveStream, max_frame_bytes: int) -> None:
        self.stream = stream
        self.splitter = FrameSplitter(max_frame_bytes)
        self._ready: deque[bytes | OversizeFrame] = deque()
        self._eof = False

    @property
    def max_frame_bytes(self) -> int:
        return self.splitter.max_frame_bytes

    async def receive(self) -> bytes | OversizeFrame:
        """The next frame without its newline, or a report of a discarded over-size one."""
        while not self._ready:
            if self._eof:
                raise anyio.EndOfStream
            try:
                data = await self.stream.receive(READ_CHUNK_BYTES)
            except anyio.EndOfStream:
                self._eof = True
                self._ready.extend(self.splitter.end())
            else:
                self._ready.extend(self.splitter.feed(data))
        return self._ready.popleft()

    async def receive_many(self) -> list[bytes | OversizeFrame]:
        """The next frame, and every whole frame that came in with it (one read's worth)."""
        frames = [await self.receive()]
        frames += self._ready
        self._ready.clear()
        return frames

    async def aclose(self) -> None:
        """Close the underlying stream."""
        await self.stream.aclose()


class FrameWriter:
    """Writes frames: at once to a sink that takes writes at once, else in batches.

    `queue` encodes a message straight onto the end of the outbox, refusing (and leaving
    nothing of) one over `max_frame_bytes`. `flush` writes the outbox. To a `WritesAtOnce`
    sink (the child's stdin pipe) the write is handed over at once: no task switch, timer or
    cancel scope while the pipe flows. Otherwise, and while such a sink is over its high-water
    mark, one task writes and the others leave their frames to it: it takes every frame queued
    meanwhile along before it returns, so a caller never waits behind a lock and a burst of
    calls leaves in a few writes. That write runs shielded, so a cancelled writer never leaves
    half a frame (or other callers' frames) behind.
    """

    def __init__(self, stream: ByteSendStream, max_frame_bytes: int) -> None:
        self._stream = stream
        # A sink that takes a write at once needs no task switch, timer or cancel scope for
        # a write while it flows (the usual case): `flush` writes to it directly.
        self._at_once: WritesAtOnce | None = stream if isinstance(stream, WritesAtOnce) else None
        self.max_frame_bytes = max_frame_bytes
        self._encoder = msgspec.json.Encoder()
        self._outbox = bytearray()
        self._writing = False

    def queue(self, message: object) -> None:
        """Add `message` as a frame; FrameTooLarge, with nothing queued, if its JSON is too long."""
        start = len(self._outbox)
        try:
            self._encoder.encode_into(message, self._outbox, -1)
        except BaseException:
            del self._outbox[start:]
            raise
        size = len(self._outbox) - start
        if size > self.max_frame_bytes:
            del self._outbox[start:]
            raise FrameTooLarge(
                f"the request is {size} bytes as JSON, over max_frame_bytes "
                f"({self.max_frame_bytes})",
                data={"size": size, "limit": self.max_frame_bytes},
            )
        self._outbox += b"\n"

    async def flush(self, stall_s: float) -> bool:
        """Write what is queued (or leave it to the task writing now); False if a write took
        longer than `stall_s`. Errors of the stream (it closed, it broke) are raised."""
        if self._writing or not self._outbox:
            return True
        at_once = self._at_once
        if at_once is not None:
            data = bytes(self._outbox)  # the outbox is reused
            self._outbox.clear()
            if at_once.write_now(data):
                return True  # the usual case: the pipe flows
        self._writing = True
        try:
            with anyio.CancelScope(shield=True, deadline=anyio.current_time() + stall_s) as scope:
                if at_once is not None:
                    await at_once.drained()
                while self._outbox:
                    data = bytes(self._outbox)  # the outbox is reused: frames queue on meanwhile
                    self._outbox.clear()
                    await self._stream.send(data)
        except BaseException:
            self._outbox.clear()
            raise
        finally:
            self._writing = False
        if scope.cancelled_caught:
            self._outbox.clear()
            return False
        return True

    async def aclose(self) -> None:
        """Close the underlying stream (what is still queued is dropped)."""
        self._outbox.clear()
        await self._stream.aclose()
