"""The threads sync tools run on: a bounded pool that knows which call each work item serves.

A thread running plugin code cannot be interrupted. When a call is cancelled while one of its
work items still runs (or waits) on the executor, that thread is abandoned: it keeps a worker
until the plugin's code returns. `CallThreads.busy()` tells, so the `Cancelled` answer can say
so and the host can replace the process.

The hop to a thread and back is most of what a sync tool costs (the SDK runs it with
`asyncio.to_thread`), so `ToolLoop.run_in_executor` hands work to the `ToolExecutor` without
`concurrent.futures` in between: the work item goes on a `SimpleQueue` that idle workers wait
on, and the worker completes the loop's own future. Results that finish while the loop has not
yet picked up the last ones share one wake-up of the loop. A work item whose future was
cancelled before a worker took it never runs (as with `ThreadPoolExecutor`).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from queue import SimpleQueue
from typing import Any, Final, ParamSpec, TypeVar

# A long stream driving a sync iterator submits one work item per item: done ones are
# dropped once this many are held.
PRUNE_AT: Final = 16
THREAD_NAME_PREFIX: Final = "hiagent-tool"
EAGER_TASKS: Final = sys.version_info >= (3, 12)  # asyncio.eager_task_factory

P = ParamSpec("P")
T = TypeVar("T")


class Work:
    """One function call for a worker thread: `run()` calls it, `deliver()` hands its outcome
    over; `done()` once the function has returned (or will never run)."""

    __slots__ = ("error", "finished", "result")

    def __init__(self) -> None:
        self.finished = False
        self.result: Any = None
        self.error: BaseException | None = None

    def done(self) -> bool:
        return self.finished

    def run(self) -> None:
        raise NotImplementedError

    def deliver(self) -> None:
        raise NotImplementedError


class CallThreads:
    """The executor work items one call submitted."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: list[Work | Future[Any]] = []

    def add(self, item: Work | Future[Any]) -> None:
        if len(self._items) >= PRUNE_AT:
            self._items = [i for i in self._items if not i.done()]
        self._items.append(item)

    def busy(self) -> bool:
        """Whether a work item of the call is still running or queued."""
        return any(not i.done() for i in self._items)


_owner: ContextVar[CallThreads | None] = ContextVar("hiagent_call_threads", default=None)


def track(threads: CallThreads) -> None:
    """Count executor work submitted from now on in this context (a call's task) as `threads`."""
    _owner.set(threads)


class _LoopWork(Work):
    """`fn(*args)` for `ToolLoop.run_in_executor`: completes `future` on `loop`."""

    __slots__ = ("args", "fn", "future", "loop", "skipped")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        future: asyncio.Future[Any],
        loop: ToolLoop,
    ) -> None:
        super().__init__()
        self.fn = fn
        self.args = args
        self.future = future
        self.loop = loop
        self.skipped = False

    def run(self) -> None:
        if self.future.cancelled():  # its caller left before a worker took it
            self.skipped = self.finished = True
            return
        try:
            self.result = self.fn(*self.args)
        except BaseException as exc:  # noqa: BLE001 - the caller's to raise, like any executor
            self.error = exc
        self.finished = True

    def deliver(self) -> None:
        if not self.skipped:
            self.loop.deliver(self.future, self.result, self.error)


class _PoolWork(Work):
    """`fn(*args, **kwargs)` for `ToolExecutor.submit`: completes a concurrent Future."""

    __slots__ = ("args", "fn", "future", "kwargs", "started")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        future: Future[Any],
    ) -> None:
        super().__init__()
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.future = future
        self.started = False

    def run(self) -> None:
        self.started = self.future.set_running_or_notify_cancel()
        if self.started:
            try:
                self.result = self.fn(*self.args, **self.kwargs)
            except BaseException as exc:  # noqa: BLE001 - the future's to raise
                self.error = exc
        self.finished = True

    def deliver(self) -> None:
        if not self.started:
            return
        if self.error is not None:
            self.future.set_exception(self.error)
        else:
            self.future.set_result(self.result)


class ToolExecutor(ThreadPoolExecutor):
    """The loop's default executor: at most `max_workers` threads, started as work needs them.

    Work submitted from a call's task (`track`) is counted for that call. It subclasses
    `ThreadPoolExecutor` only because asyncio's `set_default_executor` insists on one; the
    worker threads, their queue and `submit` are its own.
    """

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=THREAD_NAME_PREFIX)
        self.max_workers = max_workers
        self._queue: SimpleQueue[Work | None] = SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0  # queued or running
        self._workers: list[threading.Thread] = []
        self._names = itertools.count()
        self._closed = False

    @property
    def thread_count(self) -> int:
        """Worker threads started so far (never more than `max_workers`)."""
        return len(self._workers)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        self.start(_PoolWork(fn, args, kwargs, future))
        return future

    def start(self, work: Work) -> None:
        """Queue `work` for a worker, starting one if every worker has work already."""
        thread: threading.Thread | None = None
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new work after shutdown")
            self._pending += 1
            if self._pending > len(self._workers) and len(self._workers) < self.max_workers:
                name = f"{THREAD_NAME_PREFIX}_{next(self._names)}"
                thread = threading.Thread(target=self._work, name=name, daemon=True)
                self._workers.append(thread)
        owner = _owner.get()
        if owner is not None:
            owner.add(work)
        self._queue.put(work)
        if thread is not None:
            thread.start()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new work; workers end once the queue is empty (abandoned ones when they return)."""
        with self._lock:
            if self._closed:
                workers = []
            else:
                self._closed = True
                workers = list(self._workers)
        if cancel_futures:
            self._drop_queued()
        for _ in workers:
            self._queue.put(None)
        if wait:
            for thread in workers:
                thread.join()

    def _drop_queued(self) -> None:
        held: list[Work | None] = []
        while not self._queue.empty():
            held.append(self._queue.get_nowait())
        for work in held:
            if isinstance(work, _PoolWork):
                work.future.cancel()
            elif isinstance(work, _LoopWork) and not work.loop.is_closed():
                work.loop.call_soon_threadsafe(work.future.cancel)
            if work is not None:
                work.finished = True
                with self._lock:
                    self._pending -= 1

    def _work(self) -> None:
        get = self._queue.get
        while (work := get()) is not None:
            work.run()
            with self._lock:  # before the caller hears of it: its next call may come at once
                self._pending -= 1
            work.deliver()
            del work  # hold nothing of a finished call while idle


class ToolLoop(asyncio.SelectorEventLoop):
    """The shim's event loop: `run_in_executor` on its `ToolExecutor` skips `concurrent.futures`,
    and `start_task` runs a task's first step at once (Python 3.12+).

    Workers hand results back through `deliver`, which wakes the loop once for every result
    that finished before it got round to them.
    """

    def __init__(self) -> None:
        super().__init__()
        self._tools: ToolExecutor | None = None
        self._finished: deque[tuple[asyncio.Future[Any], Any, BaseException | None]] = deque()
        self._wake_sent = False

    def start_task(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """A task for `coro` whose first step runs now, inside this call, not at the loop's
        next turn, where asyncio offers that publicly (Python 3.12+, `eager_task_factory`):
        a call that needs no await (an async tool) is answered without one more trip through
        the loop. Before 3.12 the task starts at the loop's next turn, as any task does.
        """
        if EAGER_TASKS:
            return asyncio.eager_task_factory(self, coro)  # type: ignore[attr-defined, no-any-return, unused-ignore]
        return self.create_task(coro)

    def set_default_executor(self, executor: Any) -> None:
        super().set_default_executor(executor)
        self._tools = executor if isinstance(executor, ToolExecutor) else None

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        tools = self._tools
        if tools is None or (executor is not None and executor is not tools):
            return super().run_in_executor(executor, func, *args)
        if self.is_closed():
            raise RuntimeError("Event loop is closed")  # as asyncio's own says
        future: asyncio.Future[T] = self.create_future()
        tools.start(_LoopWork(func, args, future, self))
        return future

    def deliver(
        self, future: asyncio.Future[Any], result: Any, error: BaseException | None
    ) -> None:
        """From a worker thread: complete `future` on the loop with `result` or `error`."""
        self._finished.append((future, result, error))
        if self._wake_sent:
            return  # the loop is yet to run `_complete`, which will take this one too
        self._wake_sent = True
        try:
            self.call_soon_threadsafe(self._complete)
        except RuntimeError:
            pass  # the loop is closed: nobody is left to want the result

    def _complete(self) -> None:
        self._wake_sent = False  # first: a result queued from now on sends a new wake-up
        finished = self._finished
        while finished:
            future, result, error = finished.popleft()
            if future.cancelled():
                continue
            if error is None:
                future.set_result(result)
            elif isinstance(error, StopIteration):  # a future cannot carry one
                future.set_exception(RuntimeError(f"the function raised {error!r}"))
            else:
                future.set_exception(error)
