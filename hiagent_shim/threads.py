"""The executor sync tools run on: a bounded thread pool that knows which call each thread serves.

A thread running plugin code cannot be interrupted. When a call is cancelled while one of its
work items still runs (or waits) on the executor, that thread is abandoned: it keeps a worker
until the plugin's code returns. `CallThreads.busy()` tells, so the `Cancelled` answer can say
so and the host can replace the process.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any, Final, ParamSpec, TypeVar

# A long stream driving a sync iterator submits one work item per item: done ones are
# dropped once this many are held.
PRUNE_AT: Final = 16

P = ParamSpec("P")
T = TypeVar("T")


class CallThreads:
    """The executor work items one call submitted."""

    __slots__ = ("_futures",)

    def __init__(self) -> None:
        self._futures: list[Future[Any]] = []

    def add(self, future: Future[Any]) -> None:
        if len(self._futures) >= PRUNE_AT:
            self._futures = [f for f in self._futures if not f.done()]
        self._futures.append(future)

    def busy(self) -> bool:
        """Whether a work item of the call is still running or queued."""
        return any(not f.done() for f in self._futures)


_owner: ContextVar[CallThreads | None] = ContextVar("hiagent_call_threads", default=None)


def track(threads: CallThreads) -> None:
    """Count executor work submitted from now on in this context (a call's task) as `threads`."""
    _owner.set(threads)


class ToolExecutor(ThreadPoolExecutor):
    """The loop's default executor: `asyncio.to_thread` work is counted for its call."""

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="hiagent-tool")

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future = super().submit(fn, *args, **kwargs)
        owner = _owner.get()
        if owner is not None:
            owner.add(future)
        return future
