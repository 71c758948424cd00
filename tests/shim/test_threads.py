"""The shim's tool threads, in-process: a real `ToolLoop` handing work to real worker threads."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from hiagent_shim.threads import EAGER_TASKS, CallThreads, ToolExecutor, ToolLoop, track

# Anything that should happen at once is bounded by this (a failure is a hang).
STEP_S = 10.0

T = TypeVar("T")


@pytest.fixture
def loop() -> Iterator[ToolLoop]:
    loop = ToolLoop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        yield loop
    finally:
        loop.close()
    assert errors == []  # nothing went wrong where nobody was waiting for it


def run(loop: ToolLoop, executor: ToolExecutor, main: Callable[[], Awaitable[T]]) -> T:
    loop.set_default_executor(executor)
    try:
        return loop.run_until_complete(asyncio.wait_for(main(), STEP_S))
    finally:
        executor.shutdown(wait=False)


async def until(event: threading.Event) -> None:
    """Until a worker sets `event`, without blocking the loop (bounded by `run`'s STEP_S)."""
    while not event.is_set():  # noqa: ASYNC110 - a thread sets it: nothing to await on
        await asyncio.sleep(0.001)


class Gate:
    """A function a worker runs that waits until the test opens the gate."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.ran = False

    def __call__(self, value: T) -> T:
        self.ran = True
        self.entered.set()
        self.opened.wait(STEP_S)
        return value


def test_to_thread_runs_on_a_tool_thread_and_returns_its_result(loop: ToolLoop) -> None:
    def where(x: int) -> tuple[str, int]:
        return threading.current_thread().name, x * 2

    async def main() -> tuple[str, int]:
        return await asyncio.to_thread(where, 21)

    name, doubled = run(loop, ToolExecutor(4), main)
    assert name.startswith("hiagent-tool_")
    assert doubled == 42


def test_exceptions_reach_the_caller_and_stop_iteration_becomes_a_runtime_error(
    loop: ToolLoop,
) -> None:
    def fail(exc: BaseException) -> None:
        raise exc

    async def main() -> list[type[BaseException]]:
        caught: list[type[BaseException]] = []
        for exc in (ZeroDivisionError("x"), StopIteration(), KeyError("k")):
            try:
                await asyncio.to_thread(fail, exc)
            except Exception as raised:  # noqa: BLE001 - what was raised is the point
                caught.append(type(raised))
        return caught

    assert run(loop, ToolExecutor(2), main) == [ZeroDivisionError, RuntimeError, KeyError]


def test_the_context_of_the_caller_is_the_context_of_the_work(loop: ToolLoop) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def main() -> str:
        var.set("the caller's")
        return await asyncio.to_thread(var.get)

    assert run(loop, ToolExecutor(2), main) == "the caller's"


def test_threads_start_as_work_needs_them_never_beyond_the_limit(loop: ToolLoop) -> None:
    executor = ToolExecutor(2)
    gates = [Gate() for _ in range(5)]

    async def main() -> list[int]:
        calls = [asyncio.ensure_future(asyncio.to_thread(g, n)) for n, g in enumerate(gates)]
        await until(gates[0].entered)
        await until(gates[1].entered)
        running = executor.thread_count
        for gate in gates:
            gate.opened.set()
        results = await asyncio.gather(*calls)
        assert running == 2
        return list(results)

    assert run(loop, executor, main) == [0, 1, 2, 3, 4]
    assert executor.thread_count == 2


def test_one_thread_serves_calls_made_one_after_another(loop: ToolLoop) -> None:
    executor = ToolExecutor(8)

    async def main() -> None:
        for n in range(50):
            assert await asyncio.to_thread(int, n) == n

    run(loop, executor, main)
    assert executor.thread_count == 1


def test_a_call_counts_its_queued_and_running_work_as_busy(loop: ToolLoop) -> None:
    executor = ToolExecutor(1)
    running, queued = Gate(), Gate()
    threads = CallThreads()

    async def call() -> list[str]:
        track(threads)
        return list(
            await asyncio.gather(asyncio.to_thread(running, "a"), asyncio.to_thread(queued, "b"))
        )

    async def main() -> tuple[bool, bool, list[str]]:
        task = asyncio.ensure_future(call())
        await until(running.entered)
        busy_while_queued = threads.busy()
        running.opened.set()
        queued.opened.set()
        result = await task
        return busy_while_queued, threads.busy(), result

    busy_while_queued, busy_after, result = run(loop, executor, main)
    assert busy_while_queued is True
    assert busy_after is False
    assert result == ["a", "b"]


def test_work_cancelled_before_a_thread_took_it_never_runs(loop: ToolLoop) -> None:
    executor = ToolExecutor(1)
    first, second = Gate(), Gate()

    async def main() -> None:
        blocker = asyncio.ensure_future(asyncio.to_thread(first, 1))
        waiting = asyncio.ensure_future(asyncio.to_thread(second, 2))
        await until(first.entered)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        first.opened.set()
        assert await blocker == 1
        assert await asyncio.to_thread(int, 3) == 3  # the worker went past the cancelled one

    run(loop, executor, main)
    assert first.ran
    assert not second.ran


def test_a_cancelled_caller_abandons_its_running_thread_which_stays_busy_until_it_returns(
    loop: ToolLoop,
) -> None:
    executor = ToolExecutor(2)
    gate = Gate()
    threads = CallThreads()

    async def call() -> str:
        track(threads)
        return await asyncio.to_thread(gate, "late")

    async def main() -> tuple[bool, bool]:
        task = asyncio.ensure_future(call())
        await until(gate.entered)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        abandoned = threads.busy()
        gate.opened.set()
        await asyncio.to_thread(int, 0)  # the late result has been delivered (and dropped)
        while threads.busy():  # noqa: ASYNC110 - the worker marks it done right after returning
            await asyncio.sleep(0.001)
        return abandoned, threads.busy()

    assert run(loop, executor, main) == (True, False)


def test_many_results_finishing_together_all_reach_their_callers(loop: ToolLoop) -> None:
    async def main() -> list[int]:
        return list(await asyncio.gather(*(asyncio.to_thread(abs, -n) for n in range(500))))

    assert run(loop, ToolExecutor(8), main) == list(range(500))


def test_submit_serves_concurrent_futures_and_shutdown_joins_the_workers() -> None:
    before = set(threading.enumerate())
    executor = ToolExecutor(3)
    futures = [executor.submit(pow, 2, n) for n in range(10)]
    assert [f.result(STEP_S) for f in futures] == [2**n for n in range(10)]
    failing = executor.submit(int, "x")
    with pytest.raises(ValueError, match="invalid literal"):
        failing.result(STEP_S)
    executor.shutdown(wait=True)
    assert set(threading.enumerate()) <= before  # every worker it started has ended
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(int, 1)


def test_another_executor_passed_explicitly_is_used_as_is(loop: ToolLoop) -> None:
    from concurrent.futures import ThreadPoolExecutor

    other = ThreadPoolExecutor(1, thread_name_prefix="other")

    async def main() -> str:
        running = asyncio.get_running_loop()
        return await running.run_in_executor(other, lambda: threading.current_thread().name)

    try:
        assert run(loop, ToolExecutor(1), main).startswith("other")
    finally:
        other.shutdown()


EAGER_ONLY = pytest.mark.skipif(
    sys.version_info < (3, 12), reason="asyncio starts tasks eagerly, publicly, from 3.12 on"
)


@EAGER_ONLY
def test_start_task_runs_the_first_step_at_once_inside_the_task(loop: ToolLoop) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[object] = []
    started: list[asyncio.Task[str]] = []

    async def answers_at_once() -> str:
        seen.append(asyncio.current_task())
        var.set("the task's own")
        return "done"

    def from_a_callback() -> None:  # as the shim starts calls: from the wire's reader
        task = loop.start_task(answers_at_once())
        assert task.done()  # no turn of the loop in between
        started.append(task)

    async def main() -> None:
        loop.call_soon(from_a_callback)
        while not started:  # noqa: ASYNC110 - a plain callback sets it
            await asyncio.sleep(0)

    run(loop, ToolExecutor(1), main)
    assert seen == started  # it ran as its task: asyncio.timeout, anyio work inside it
    assert started[0].result() == "done"
    assert var.get() == "unset"  # what it set stays in its own context


def test_a_started_task_that_awaits_goes_on_on_the_loop_and_can_be_cancelled(
    loop: ToolLoop,
) -> None:
    steps: list[str] = []
    started: list[asyncio.Task[None]] = []

    async def awaits() -> None:
        steps.append("first")
        await asyncio.sleep(0)
        steps.append("second")
        await asyncio.sleep(STEP_S)
        steps.append("never")

    def from_a_callback() -> None:
        started.append(loop.start_task(awaits()))
        assert steps == (["first"] if EAGER_TASKS else [])

    async def main() -> None:
        loop.call_soon(from_a_callback)
        while len(steps) < 2:  # noqa: ASYNC110 - the started task appends it
            await asyncio.sleep(0)
        started[0].cancel()
        with pytest.raises(asyncio.CancelledError):
            await started[0]

    run(loop, ToolExecutor(1), main)
    assert steps == ["first", "second"]


def test_start_task_from_inside_another_task_starts_it_at_the_next_turn(loop: ToolLoop) -> None:
    async def child() -> str:
        return "child"

    async def main() -> str:
        task = loop.start_task(child())
        assert not task.done() or sys.version_info >= (3, 12)  # eager tasks nest on 3.12+
        return await task

    assert run(loop, ToolExecutor(1), main) == "child"
