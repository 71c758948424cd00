"""One call in flight on the host's end of the wire: its outcome, and how its caller waits for it.

The first outcome wins (the child's answer, a failure of the wire). A caller waits until then
or until its deadline. On asyncio (what the host runs on) that wait is a bare future and a
loop timer: anyio's Event and cancel scope cost several times as much, and a warm call is
mostly this bookkeeping (see bench/pool.py). Other anyio backends wait on an anyio Event in a
cancel scope.
"""

from __future__ import annotations

import asyncio
import copy
import math
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from hiagent_host.errors import HostError

Item = tuple[int, Any]


def running_asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The asyncio loop running the current task, or None (another anyio backend)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return loop if asyncio.current_task(loop) is not None else None


class Pending:
    """One call waiting for its answer; the first outcome wins."""

    def __init__(self, call_id: int, method: str, loop: asyncio.AbstractEventLoop | None) -> None:
        self.id = call_id
        self.method = method
        self.finished = False
        self.result: Any = None
        self.error: HostError | None = None
        self.answered = False  # the child sent its final answer (else it may still be working)
        self.cancel_sent = False
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None
        self._event: anyio.Event | None = None

    def resolve(self, result: Any) -> None:
        if not self.finished:
            self.result = result
            self._finish()

    def fail(self, error: HostError) -> None:
        if not self.finished:
            self.error = error
            self._finish()

    def outcome(self) -> Any:
        if self.error is not None:
            raise fresh(self.error)
        return self.result

    def now(self) -> float:
        """The clock deadlines are on (anyio's: the loop's time on asyncio)."""
        return self._loop.time() if self._loop is not None else anyio.current_time()

    async def wait_until(self, deadline: float) -> bool:
        """Until the call has an outcome, at most until `deadline` (inf: none); whether it has."""
        if self.finished:
            return True
        if self._loop is None:
            self._event = anyio.Event()
            with anyio.CancelScope(deadline=deadline):
                await self._event.wait()
            return self.finished
        waiter = self._waiter = self._loop.create_future()
        timer = None if deadline == math.inf else self._loop.call_at(deadline, _wake, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        return self.finished

    def _finish(self) -> None:
        self.finished = True
        if self._waiter is not None:
            _wake(self._waiter)
        if self._event is not None:
            self._event.set()


class PendingStream(Pending):
    """A streaming call: its items queue up (at most `window` of them) until consumed."""

    def __init__(
        self, call_id: int, method: str, loop: asyncio.AbstractEventLoop | None, window: int
    ) -> None:
        super().__init__(call_id, method, loop)
        self.received = 0
        self.items: MemoryObjectSendStream[Item]
        self.queue: MemoryObjectReceiveStream[Item]
        self.items, self.queue = anyio.create_memory_object_stream[Item](window)

    def _finish(self) -> None:
        super()._finish()
        self.items.close()  # the consumer drains what came, then sees the end

    def close(self) -> None:
        self.items.close()
        self.queue.close()


def fresh(error: HostError) -> HostError:
    """A copy of a shared error, so each raise gets its own traceback."""
    clone = copy.copy(error)
    clone.__traceback__ = None
    return clone


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
