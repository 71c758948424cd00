"""One call in flight on the host's end of the wire: its outcome, and how its caller waits for it.

The first outcome wins (the child's answer, a failure of the wire). A caller waits until then
or until its deadline. On asyncio (what the host runs on) that wait is a bare future, and the
deadlines of all of a peer's calls share one loop timer (`Deadlines`): anyio's Event and
cancel scope, or even a loop timer per call, cost a good part of a warm call (see
bench/pool.py). Other anyio backends wait on an anyio Event in a cancel scope.
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
        self.deadline = math.inf  # when its `Deadlines` lets it expire
        self.expired = False  # its deadline passed (it may still get an outcome later)
        self.finished = False
        self.result: Any = None
        self.error: HostError | None = None
        self._copy_error = False
        self.answered = False  # the child sent its final answer (else it may still be working)
        self.cancel_sent = False
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None
        self._event: anyio.Event | None = None

    def resolve(self, result: Any) -> None:
        if not self.finished:
            self.result = result
            self._finish()

    def fail(self, error: HostError, *, shared: bool = False) -> None:
        """The call failed with `error`; `shared`: other calls fail with the same object."""
        if not self.finished:
            self.error = error
            self._copy_error = shared
            self._finish()

    def outcome(self) -> Any:
        """The result, or the error raised: this call's own object the first time, a copy
        when it is shared or raised again (each raise gets its own traceback)."""
        if self.error is not None:
            error = fresh(self.error) if self._copy_error else self.error
            self._copy_error = True
            raise error
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

    async def wait(self) -> bool:
        """Until the call has an outcome or its deadline passed (`expire`); whether it has an
        outcome. Asyncio only: the deadline is kept by a `Deadlines`."""
        if self.finished or self.expired:
            return self.finished
        if self._loop is None:
            raise RuntimeError("Pending.wait needs an asyncio loop; use wait_until")
        waiter = self._waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None
        return self.finished

    def expire(self) -> None:
        """The deadline passed: wake the caller of `wait` (it finds no outcome)."""
        self.expired = True
        if self._waiter is not None:
            _wake(self._waiter)

    def _finish(self) -> None:
        self.finished = True
        if self._waiter is not None:
            _wake(self._waiter)
        if self._event is not None:
            self._event.set()


class Deadlines:
    """The deadlines of one peer's calls, on one loop timer armed for the earliest of them.

    Calls are kept in lanes by timeout; a lane is in order of deadline, as calls join it as they
    start and the loop's clock only moves on. So the earliest deadline of a lane is its first
    call's, a call that ends leaves its lane in O(1), and with one timeout for every call (the
    usual case) a call costs no timer of its own: the timer fires about once per timeout
    period (at the deadline of the oldest call it was armed for) and is armed again for the
    call that is now the oldest.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lanes: dict[float, dict[int, Pending]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def add(self, pending: Pending, timeout_s: float) -> None:
        """Give `pending` its deadline, `timeout_s` from now; it expires then unless removed."""
        pending.deadline = self._loop.time() + timeout_s
        lane = self._lanes.get(timeout_s)
        if lane is None:
            lane = self._lanes[timeout_s] = {}
        lane[pending.id] = pending
        if pending.deadline < self._timer_at:
            self._arm(pending.deadline)

    def remove(self, pending: Pending, timeout_s: float) -> None:
        """`pending` no longer needs its deadline (it ended, or it expired already)."""
        lane = self._lanes.get(timeout_s)
        if lane is not None and lane.pop(pending.id, None) is not None and not lane:
            del self._lanes[timeout_s]

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._fire)
        self._timer_at = when

    def _fire(self) -> None:
        """Expire every call whose deadline has passed; arm the timer for the next one."""
        self._timer, self._timer_at = None, math.inf
        now = self._loop.time()
        earliest = math.inf
        for timeout_s, lane in list(self._lanes.items()):
            while lane:
                first = lane[next(iter(lane))]
                if first.deadline > now:
                    earliest = min(earliest, first.deadline)
                    break
                del lane[first.id]
                first.expire()
            if not lane:
                del self._lanes[timeout_s]
        if earliest < math.inf:
            self._arm(earliest)


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
