"""`RpcPeer`: many concurrent calls over one child's stdin/stdout, each with its own deadline.

Frames from the child are handed to the call waiting for their id: as they arrive, when the
child's stdout is pushed (`PushedBytes`, the pool's pipes: no task and no extra turn of the
loop between the bytes and the waiting caller), or by a task reading a byte stream. A call's
frame goes to the child's pipe as soon as it is made; while the pipe is full (or on a stream
that cannot take writes at once) one caller writes and takes along whatever others queue
meanwhile, so a frame is always written whole (see `FrameWriter`). A call past its deadline
sends `$/cancelRequest` and waits `cancel_grace_s` for the child to answer: `DeadlineExceeded`
says whether it did (if not, the child is wedged and the pool stops it). A caller cancelled by
its own scope sends `$/cancelRequest` too. EOF on the child's stdout fails every pending call
at once with `PeerClosed`. A child that reports a cancelled call's thread as abandoned is
counted in `abandoned_threads` (the pool replaces it). Nothing here kills a process; the pool does.
With `busy_poll_us`, a call asks its event loop to poll for the answer before sleeping,
while this child's last answer came quickly (see busypoll.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final, NoReturn

import anyio
import msgspec
from anyio.abc import ByteReceiveStream, ByteSendStream, TaskGroup

from hiagent_host.config import PoolConfig
from hiagent_host.errors import HostError
from hiagent_host.rpc import messages
from hiagent_host.rpc.busypoll import BusyPoll, busy_poll_for
from hiagent_host.rpc.errors import (
    DeadlineExceeded,
    PeerClosed,
    ProtocolViolation,
    ResultTooLarge,
)
from hiagent_host.rpc.framing import (
    FrameReader,
    FrameSplitter,
    FrameWriter,
    OversizeFrame,
    PushedBytes,
)
from hiagent_host.rpc.messages import ErrorObject, Incoming, Notification, Request, StreamItem
from hiagent_host.rpc.pending import (
    Deadlines,
    Pending,
    PendingStream,
    fresh,
    running_asyncio_loop,
)

# A write the child does not take off its stdin for this long means it stopped reading: a frozen
# or dying child, or one whose event loop a plugin blocks (the shim reads on its loop) with a
# pipe's worth of frames waiting. Deadlines, cancel grace and the pool's kill come first.
SEND_STALL_S: Final = 30.0
# A cancel notification (or closing stdin) is tiny; waiting longer means the child is gone.
CANCEL_SEND_S: Final = 1.0

logger = logging.getLogger(__name__)
_NOTHING: Final = object()


class StreamCall:
    """The items of one streaming call, acknowledged as they are consumed.

    Iterate it; the final result is in `result` once iteration ends, and a failure (the
    child's error, a deadline, EOF) is raised from the iteration.
    """

    def __init__(
        self, peer: RpcPeer, pending: PendingStream, deadline: float, timeout_s: float | None
    ) -> None:
        self._peer = peer
        self._pending = pending
        self._deadline = deadline
        self._timeout_s = timeout_s
        self._consumed = 0
        self._acked = 0
        self.result: Any = None

    def __aiter__(self) -> StreamCall:
        return self

    async def __anext__(self) -> Any:
        item: Any = _NOTHING
        with anyio.CancelScope(deadline=self._deadline):
            item = await self._next()
        if item is _NOTHING:
            await self._peer._expire(self._pending, self._timeout_s)
        return item

    async def _next(self) -> Any:
        try:
            _, item = await self._pending.queue.receive()
        except anyio.EndOfStream:
            self.result = self._pending.outcome()
            raise StopAsyncIteration from None
        self._consumed += 1
        if self._consumed - self._acked >= self._peer.ack_every:
            self._acked = self._consumed
            ack = messages.StreamAck(id=self._pending.id, seq=self._consumed - 1)
            await self._peer.notify(messages.STREAM_ACK, ack)
        return item


class RpcPeer:
    """The host's end of one child's wire. Use `async with`, or run `run()` in a task group."""

    def __init__(
        self,
        send_stream: ByteSendStream,
        receive_stream: ByteReceiveStream | PushedBytes,
        *,
        max_frame_bytes: int,
        stream_window: int,
        cancel_grace_s: float,
        busy_poll_us: int = 0,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        self._reader: FrameReader | None = None
        self._pushed: PushedBytes | None = None
        if isinstance(receive_stream, ByteReceiveStream):
            self._reader = FrameReader(receive_stream, max_frame_bytes)
        else:
            self._pushed = receive_stream
            self._splitter = FrameSplitter(max_frame_bytes)
            self._pushed_eof = anyio.Event()
        self._writer = FrameWriter(send_stream, max_frame_bytes)
        self._decoder = msgspec.json.Decoder(Incoming)
        self.max_frame_bytes = max_frame_bytes
        self.stream_window = stream_window
        self.ack_every = max(1, stream_window // 2)  # well before the child's window closes
        self.cancel_grace_s = cancel_grace_s
        self._log = log or logger
        self.abandoned_threads = 0  # cancelled calls whose tool thread the child could not stop
        self.busy_poll_us = busy_poll_us
        self._loop: asyncio.AbstractEventLoop | None = None  # see `pending`
        self._loop_known = False
        self._deadlines: Deadlines | None = None  # the calls' deadlines, on asyncio
        self._busy: BusyPoll | None = None  # the loop's polling, if on (see busypoll.py)
        self._answers_quick = True  # the last answer came quickly (see busypoll.py)
        self._pending: dict[int, Pending] = {}
        self._next_id = 1
        self._close_error: HostError | None = None
        self.closed = anyio.Event()
        self._task_group: TaskGroup | None = None
        if self._pushed is not None:
            self._pushed.attach(self._on_data, self._on_eof)

    @classmethod
    def from_config(
        cls,
        send_stream: ByteSendStream,
        receive_stream: ByteReceiveStream | PushedBytes,
        pool: PoolConfig,
    ) -> RpcPeer:
        """A peer with the frame limit, stream window and cancel grace of `pool`."""
        return cls(
            send_stream,
            receive_stream,
            max_frame_bytes=pool.max_frame_bytes,
            stream_window=pool.stream_window,
            cancel_grace_s=pool.cancel_grace_s,
            busy_poll_us=pool.busy_poll_us,
        )

    async def __aenter__(self) -> RpcPeer:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self.run)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()
            await self._task_group.__aexit__(None, None, None)

    @property
    def pending_count(self) -> int:
        """Calls sent and not yet answered (streams included)."""
        return len(self._pending)

    @property
    def close_error(self) -> HostError | None:
        """Why the peer closed, once `closed` is set."""
        return self._close_error

    # -- calls -----------------------------------------------------------------------------

    async def call(self, method: str, params: Any = None, *, timeout_s: float | None) -> Any:
        """Send a request and return its result; the child's error is raised as a HostError."""
        pending = Pending(self._new_id(), method, self._running_loop())
        deadlines = self._deadlines if timeout_s is not None else None
        deadline = 0.0 if deadlines is not None else pending.now() + _seconds(timeout_s)
        self._open(pending, params)
        if deadlines is not None:
            deadlines.add(pending, _seconds(timeout_s))  # counts from here, as `deadline` does
        busy = self._busy if self._answers_quick else None
        try:
            await self._flush()  # shielded and bounded on its own
            sent = pending.now()
            if busy is not None:
                busy.expect()
            if deadlines is not None:
                in_time = await pending.wait()
            else:
                in_time = await pending.wait_until(deadline)
            if not in_time:
                await self._expire(pending, timeout_s)
            if self._busy is not None:
                self._answers_quick = pending.now() - sent <= self._busy.quick_s
            return pending.outcome()
        finally:
            if busy is not None:
                busy.settle()
            if deadlines is not None:
                deadlines.remove(pending, _seconds(timeout_s))
            if not pending.answered:
                await self._cancel(pending)
            self._pending.pop(pending.id, None)

    @asynccontextmanager
    async def stream(
        self, method: str, params: Any = None, *, timeout_s: float | None
    ) -> AsyncIterator[StreamCall]:
        """A streaming request: yields a `StreamCall`; leaving early cancels the call."""
        pending = PendingStream(self._new_id(), method, self._running_loop(), self.stream_window)
        try:
            self._open(pending, params)
        except BaseException:
            pending.close()
            raise
        deadline = anyio.current_time() + _seconds(timeout_s)
        try:
            with anyio.CancelScope(deadline=deadline) as scope:
                await self._flush()
            if scope.cancelled_caught:
                await self._expire(pending, timeout_s)
            yield StreamCall(self, pending, deadline, timeout_s)
        finally:
            await self._cancel(pending)
            self._pending.pop(pending.id, None)
            pending.close()

    async def notify(self, method: str, params: Any = None) -> None:
        """Send a notification (no answer)."""
        if self._close_error is not None:
            raise fresh(self._close_error)
        self._writer.queue(Notification(method=method, params=params or {}))
        await self._flush()
        if self._close_error is not None:
            raise fresh(self._close_error)

    def fail_all(self, error: HostError) -> None:
        """Fail every pending call with `error` and refuse new ones; the reader keeps draining."""
        if self._close_error is None:
            self._close_error = error
        for pending in list(self._pending.values()):
            pending.fail(error, shared=True)
        self.closed.set()

    async def aclose(self) -> None:
        """Fail pending calls and close the child's stdin (the shim exits at EOF).

        The reader goes on until the child closes its stdout, or until `async with` ends
        (or the task group running `run()` is cancelled).
        """
        self.fail_all(PeerClosed("the host closed the connection to the plugin process"))
        with anyio.move_on_after(CANCEL_SEND_S, shield=True):
            try:
                await self._writer.aclose()
            except (anyio.BrokenResourceError, OSError) as exc:
                self._log.debug("closing the plugin process's stdin: %s", exc)

    # -- the reader ------------------------------------------------------------------------

    async def run(self) -> None:
        """Read and dispatch frames until EOF, then fail whatever is still pending.

        Returns at EOF; cancel it to stop reading. Either way the receive stream is closed.
        With pushed bytes, frames are dispatched as they arrive and this only waits for EOF.
        """
        try:
            if self._reader is not None:
                await self._read(self._reader)
            else:
                await self._pushed_eof.wait()
        finally:
            self.fail_all(PeerClosed("the plugin process closed its stdout"))
            with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_SEND_S):
                if self._reader is not None:
                    await self._reader.aclose()
                elif self._pushed is not None:
                    await self._pushed.aclose()

    async def _read(self, reader: FrameReader) -> None:
        while True:
            try:
                frames = await reader.receive_many()
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            for frame in frames:
                self._dispatch(frame)

    def _on_data(self, data: bytes) -> None:
        """Pushed bytes arrived (in the loop's callback): dispatch the frames they complete."""
        for frame in self._splitter.feed(data):
            self._dispatch(frame)

    def _on_eof(self) -> None:
        for frame in self._splitter.end():
            self._dispatch(frame)
        self._pushed_eof.set()

    def _dispatch(self, frame: bytes | OversizeFrame) -> None:
        if isinstance(frame, OversizeFrame):
            self._oversize(frame)
            return
        try:
            message = self._decoder.decode(frame)
        except msgspec.DecodeError as exc:  # ValidationError included
            self._log.warning("ignoring a malformed frame from the plugin process: %s", exc)
            return
        if message.jsonrpc != messages.JSONRPC:
            self._log.warning("ignoring a malformed frame: jsonrpc is %r", message.jsonrpc)
        elif message.method is not None:
            self._notification(message)
        elif message.id is None:
            detail = message.error.message if message.error else "no id"
            self._log.warning("the plugin process reported an error on no call: %s", detail)
        elif (pending := self._pending.get(message.id)) is None:
            if message.error is not None:
                self._count_abandoned(message.error)  # a caller that left sent a cancel
            self._log.debug("ignoring a late answer to call %d", message.id)
        else:
            pending.answered = True
            if message.error is not None:
                self._count_abandoned(message.error)
                pending.fail(messages.error_to_host(message.error))
            elif message.result is msgspec.UNSET:
                pending.fail(ProtocolViolation("the plugin process answered without a result"))
            else:
                pending.resolve(message.result)

    def _count_abandoned(self, error: ErrorObject) -> None:
        if messages.abandoned_thread(error):
            self.abandoned_threads += 1
            self._log.warning(
                "the plugin process abandoned a tool thread it could not stop (%d so far)",
                self.abandoned_threads,
            )

    def _notification(self, message: Incoming) -> None:
        if message.method != messages.STREAM_ITEM:
            self._log.debug("ignoring notification %r from the plugin process", message.method)
            return
        try:
            item = msgspec.convert(message.params, StreamItem)
        except msgspec.ValidationError as exc:
            self._log.warning("ignoring a malformed stream item: %s", exc)
            return
        pending = self._pending.get(item.id)
        if not isinstance(pending, PendingStream) or pending.finished:
            return  # a stream the host has left, or a late item
        if item.seq != pending.received:
            pending.fail(ProtocolViolation(f"stream item {item.seq} out of order"))
            return
        try:
            pending.items.send_nowait((item.seq, item.item))
        except anyio.WouldBlock:
            pending.fail(ProtocolViolation("the plugin process overran the stream window"))
            return
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return  # the consumer has just left the stream
        pending.received += 1

    def _oversize(self, frame: OversizeFrame) -> None:
        pending = self._pending.get(frame.id) if frame.id is not None else None
        self._log.warning(
            "discarded a %d-byte frame over max_frame_bytes (%d) for call %s",
            frame.size,
            self.max_frame_bytes,
            frame.id,
        )
        if pending is not None:
            pending.answered = not frame.stream_item
            pending.fail(
                ResultTooLarge(
                    f"the plugin's answer is over {frame.size} bytes, over max_frame_bytes "
                    f"({self.max_frame_bytes})",
                    data={"size": frame.size, "limit": self.max_frame_bytes},
                )
            )

    # -- mechanics -------------------------------------------------------------------------

    def _running_loop(self) -> asyncio.AbstractEventLoop | None:
        """The asyncio loop the peer runs on, or None on another backend (asked once)."""
        if not self._loop_known:
            self._loop, self._loop_known = running_asyncio_loop(), True
            if self._loop is not None:
                self._deadlines = Deadlines(self._loop)
                self._busy = busy_poll_for(self._loop, self.busy_poll_us)
        return self._loop

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _open(self, pending: Pending, params: Any) -> None:
        """Queue the request (refusing an over-size one) and register the call; `_flush` sends."""
        if self._close_error is not None:
            raise fresh(self._close_error)
        self._writer.queue(Request(id=pending.id, method=pending.method, params=params or {}))
        self._pending[pending.id] = pending

    async def _flush(self) -> None:
        """Write what is queued; a child that stops reading or closed its stdin closes the peer
        (which fails every pending call, so callers learn of it from their answer)."""
        try:
            if not await self._writer.flush(SEND_STALL_S):
                stalled = f"the plugin process stopped reading its stdin for {SEND_STALL_S} s"
                self.fail_all(PeerClosed(stalled))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            self.fail_all(PeerClosed(f"the plugin process closed its stdin: {exc}"))

    async def _expire(self, pending: Pending, timeout_s: float | None) -> NoReturn:
        """The deadline passed: cancel in the child, give it `cancel_grace_s` to answer."""
        await self._cancel(pending)
        await pending.wait_until(pending.now() + self.cancel_grace_s)
        acknowledged = pending.answered  # the Cancelled error, or a result that came late
        raise DeadlineExceeded(
            f"{pending.method} did not finish within {timeout_s} s",
            cancel_acknowledged=acknowledged,
            data={"timeout_s": timeout_s, "cancel_acknowledged": acknowledged},
        )

    async def _cancel(self, pending: Pending) -> None:
        """Send `$/cancelRequest` for `pending` once, shielded and bounded (unless answered)."""
        if pending.cancel_sent or pending.answered or self._close_error is not None:
            return
        pending.cancel_sent = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_SEND_S):
            try:
                await self.notify(messages.CANCEL_REQUEST, messages.CallRef(id=pending.id))
            except HostError as exc:
                self._log.debug("could not cancel call %d: %s", pending.id, exc.message)


def _seconds(timeout_s: float | None) -> float:
    return math.inf if timeout_s is None else timeout_s
