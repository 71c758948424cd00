"""Newline-delimited JSON frames over anyio byte streams: bounded reads, batched checked writes.

A frame is one UTF-8 JSON object followed by `\\n`; JSON never needs a raw newline inside.
The reader never holds more than `max_frame_bytes` plus one read chunk: a longer line is
discarded up to its newline and reported as an `OversizeFrame`, carrying the call id read
from the frame's first bytes (the shim writes every frame of a call so that it starts with
that id; see docs/protocol.md). The writer encodes each frame straight into one outbox and
writes everything queued in one go.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Final

import anyio
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


class FrameReader:
    """Reads frames from `stream`; `receive` and `receive_many` raise `anyio.EndOfStream` at
    the end."""

    def __init__(self, stream: ByteReceiveStream, max_frame_bytes: int) -> None:
        self._stream = stream
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer known to hold no newline
        self._eof = False

    async def receive(self) -> bytes | OversizeFrame:
        """The next frame without its newline, or a report of a discarded over-size one."""
        while True:
            end = self._buffer.find(b"\n", self._scanned)
            if 0 <= end <= self.max_frame_bytes:
                frame = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                self._scanned = 0
                return frame
            if end > self.max_frame_bytes or len(self._buffer) > self.max_frame_bytes:
                return await self._discard()
            self._scanned = len(self._buffer)
            if self._eof:
                return self._last()
            await self._fill()

    async def receive_many(self) -> list[bytes | OversizeFrame]:
        """The next frame, and every whole frame that came in with it (one read's worth)."""
        frames = [await self.receive()]
        last = self._buffer.rfind(b"\n")
        if last >= 0:  # whole lines, so each one is in memory already: no discarding needed
            for frame in bytes(self._buffer[:last]).split(b"\n"):
                too_long = len(frame) > self.max_frame_bytes
                frames.append(_oversize(frame[:SNIFF_BYTES], len(frame)) if too_long else frame)
            del self._buffer[: last + 1]
            self._scanned = 0
        return frames

    async def aclose(self) -> None:
        """Close the underlying stream."""
        await self._stream.aclose()

    def _last(self) -> bytes:
        """At EOF: a final frame without its newline, or the end of the stream."""
        if not self._buffer:
            raise anyio.EndOfStream
        frame = bytes(self._buffer)
        self._buffer.clear()
        self._scanned = 0
        return frame

    async def _fill(self) -> None:
        try:
            self._buffer += await self._stream.receive(READ_CHUNK_BYTES)
        except anyio.EndOfStream:
            self._eof = True

    async def _discard(self) -> OversizeFrame:
        """Drop the current frame up to its newline, keeping only its first bytes."""
        prefix = bytes(self._buffer[:SNIFF_BYTES])
        size = 0
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                size += end
                del self._buffer[: end + 1]
                self._scanned = 0
                return _oversize(prefix, size)
            size += len(self._buffer)
            self._buffer.clear()
            if self._eof:
                self._scanned = 0
                return _oversize(prefix, size)
            await self._fill()


class FrameWriter:
    """Writes frames in batches: one write carries every frame queued while the last one ran.

    `queue` encodes a message straight onto the end of the outbox, refusing (and leaving
    nothing of) one over `max_frame_bytes`. `flush` writes the outbox, unless another task is
    writing already: that task takes every frame queued meanwhile along before it returns, so a
    caller never waits behind a lock and a burst of calls leaves in a few writes. A write runs
    shielded, so a cancelled writer never leaves half a frame (or other callers' frames) behind.

    On asyncio, where a child's stdin is anyio's wrapper of an asyncio `StreamWriter`, the
    outbox goes straight to the pipe's transport, without an await: the transport takes the
    whole write at once (what the pipe does not take now it keeps, in order). The first frame
    of a turn of the loop leaves at once; frames queued after it in the same turn leave
    together at the start of the next one (a burst of calls wakes the child once or twice, not
    once per call). Only when the child stops keeping up (the transport holds more than its
    high-water mark) does `flush` wait, as on every other stream, for the pipe to drain,
    bounded by `stall_s`.
    """

    def __init__(self, stream: ByteSendStream, max_frame_bytes: int) -> None:
        self._stream = stream
        self.max_frame_bytes = max_frame_bytes
        self._encoder = msgspec.json.Encoder()
        self._outbox = bytearray()
        self._writing = False
        self._transport = asyncio_transport(stream)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._later = False  # a direct write is due at the start of the loop's next turn
        self._closed = False

    @property
    def direct(self) -> bool:
        """Whether frames go straight to an asyncio transport (else through `stream.send`)."""
        return self._transport is not None

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
        if self._transport is not None:
            if self._later:
                return True  # it leaves with the frames of this turn, at the start of the next
            if self._write_direct(self._transport):
                self._loop = self._loop or asyncio.get_running_loop()
                self._later = True
                self._loop.call_soon(self._write_later)
                return True
        self._writing = True
        try:
            with anyio.CancelScope(shield=True, deadline=anyio.current_time() + stall_s) as scope:
                while True:  # once at least: a direct write may have left the pipe backed up
                    data = bytes(self._outbox)  # the outbox is reused: frames queue on meanwhile
                    self._outbox.clear()
                    await self._stream.send(data)  # b"": waits for the pipe to drain
                    if not self._outbox:
                        break
        except BaseException:
            self._outbox.clear()
            raise
        finally:
            self._writing = False
        if scope.cancelled_caught:
            self._outbox.clear()
            return False
        return True

    def _write_direct(self, transport: asyncio.WriteTransport) -> bool:
        """Hand the outbox to the transport; whether the pipe keeps up (else wait for it)."""
        if transport.is_closing():
            self._outbox.clear()
            raise anyio.ClosedResourceError if self._closed else anyio.BrokenResourceError
        data = bytes(self._outbox)
        self._outbox.clear()
        transport.write(data)
        if transport.is_closing():  # the write failed: the child closed its stdin
            raise anyio.BrokenResourceError
        return transport.get_write_buffer_size() <= transport.get_write_buffer_limits()[1]

    def _write_later(self) -> None:
        """The frames queued in the last turn of the loop, written together (see the class)."""
        self._later = False
        if self._writing or not self._outbox or self._transport is None:
            return
        try:
            self._write_direct(self._transport)  # a backlog makes the next flush wait
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the child's stdin is gone: its calls fail when its stdout ends

    async def aclose(self) -> None:
        """Close the underlying stream (what is still queued is dropped)."""
        self._outbox.clear()
        self._closed = True
        await self._stream.aclose()


def asyncio_transport(stream: ByteSendStream) -> asyncio.WriteTransport | None:
    """The asyncio transport under `stream` when it is anyio's wrapper of an asyncio
    `StreamWriter` (a child's stdin from `anyio.open_process` on asyncio), else None.

    anyio keeps the writer in the wrapper's `_stream`; should that change, every write simply
    goes through `stream.send` again (tests/rpc checks that a child's stdin still takes the
    direct path).
    """
    writer = getattr(stream, "_stream", None)
    if not isinstance(writer, asyncio.StreamWriter):
        return None
    transport = writer.transport
    return transport if isinstance(transport, asyncio.WriteTransport) else None
