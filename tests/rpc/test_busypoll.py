"""Busy polling: the selector polls until its deadline, then sleeps; peers ask for it while
their child answers quickly; the loop is used only where it can pay off."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from hiagent_host.rpc import busypoll
from hiagent_host.rpc.busypoll import BusyPollLoop, BusyPollSelector, loop_factory
from tests.rpc.test_peer_process import CHILD, STEP_S, peer_of

# Bounds a wait that succeeds at once when the code is right.
WAIT_S = 10.0
# The peer test's budget: a loopback echo answers well within four of it (`quick_s`), the
# held call long after.
BUDGET_S = 0.05


@pytest.fixture
def selector() -> Iterator[tuple[BusyPollSelector, socket.socket, socket.socket]]:
    reading, writing = socket.socketpair()
    polling = BusyPollSelector()
    polling.register(reading, busypoll.selectors.EVENT_READ)
    try:
        yield polling, reading, writing
    finally:
        polling.close()
        reading.close()
        writing.close()


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)  # polling a probe, bounded by the deadline


def test_without_a_deadline_to_poll_to_it_is_the_plain_selector(selector) -> None:
    polling, _, writing = selector
    assert polling.select(0) == []
    writing.send(b"x")
    assert len(polling.select(None)) == 1
    assert (polling.hits, polling.misses) == (0, 0)


def test_an_event_that_comes_while_polling_ends_the_poll_as_a_hit(selector) -> None:
    polling, _, writing = selector
    polling.poll_until = time.monotonic() + WAIT_S
    sender = threading.Thread(target=writing.send, args=(b"x",))
    sender.start()
    try:
        assert len(polling.select(None)) == 1
    finally:
        sender.join()
    assert (polling.hits, polling.misses) == (1, 0)  # found by polling, not after a sleep


def test_a_poll_that_runs_out_counts_a_miss_and_then_sleeps_until_the_event(selector) -> None:
    polling, _, writing = selector
    polling.poll_until = time.monotonic() + 0.01

    def send_once_asleep() -> None:
        wait_until(lambda: polling.misses == 1, "the poll to run out")
        writing.send(b"x")

    sender = threading.Thread(target=send_once_asleep)
    sender.start()
    try:
        assert len(polling.select(None)) == 1
    finally:
        sender.join()
    assert (polling.hits, polling.misses) == (0, 1)


def test_polling_keeps_the_callers_timeout(selector) -> None:
    polling, _, _ = selector
    polling.poll_until = time.monotonic() + 0.01
    start = time.monotonic()
    assert polling.select(0.05) == []  # polls 10 ms, then sleeps the rest of the 50 ms
    assert time.monotonic() - start >= 0.05
    assert polling.misses == 1


def test_a_timer_due_before_the_poll_ends_is_not_delayed(selector) -> None:
    polling, _, _ = selector
    polling.poll_until = time.monotonic() + 60.0
    start = time.monotonic()
    assert polling.select(0.02) == []
    assert 0.02 <= time.monotonic() - start < WAIT_S
    assert polling.misses == 1


def test_the_loop_polls_only_after_an_answer_is_expected_and_keeps_its_timers() -> None:
    loop = BusyPollLoop(budget_s=60.0)
    try:

        async def main() -> float:
            await asyncio.sleep(0.001)  # nothing expected: an ordinary sleep
            assert (loop.hits, loop.misses) == (0, 0)
            loop.expect_answer()
            start = loop.time()
            await asyncio.sleep(0.02)  # the timer still fires, well before the budget ends
            return loop.time() - start

        assert 0.02 <= loop.run_until_complete(main()) < WAIT_S
        assert loop.misses >= 1
    finally:
        loop.close()


def test_the_factory_makes_a_polling_loop_only_with_a_budget_and_two_cpus(monkeypatch) -> None:
    monkeypatch.setattr(busypoll, "usable_cpus", lambda: 2.0)
    made = loop_factory(200)()
    try:
        assert isinstance(made, BusyPollLoop)
        assert made.budget_s == pytest.approx(200e-6)
    finally:
        made.close()
    for budget, cpus in ((0, 2.0), (200, 1.0), (200, 1.5)):
        monkeypatch.setattr(busypoll, "usable_cpus", lambda cpus=cpus: cpus)
        made = loop_factory(budget)()
        try:
            assert not isinstance(made, BusyPollLoop), (budget, cpus)
        finally:
            made.close()


def test_the_installed_policy_makes_the_factorys_loops(monkeypatch) -> None:
    monkeypatch.setattr(busypoll, "usable_cpus", lambda: 4.0)
    with warnings.catch_warnings():  # policies are deprecated from Python 3.14 on
        warnings.simplefilter("ignore", DeprecationWarning)
        before = asyncio.get_event_loop_policy()
        try:
            busypoll.install_loop_policy(50)
            made = asyncio.new_event_loop()
        finally:
            asyncio.set_event_loop_policy(before)
    try:
        assert isinstance(made, BusyPollLoop)
        assert made.budget_s == pytest.approx(50e-6)
    finally:
        made.close()


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"self": "0::/app\n"}, None),  # no cpu.max anywhere: no cap
        ({"self": "0::/app\n", "app/cpu.max": "max 100000\n"}, None),
        ({"self": "0::/app\n", "app/cpu.max": "150000 100000\n"}, 1.5),
        ({"self": "0::/\n", "cpu.max": "50000 100000\n"}, 0.5),  # a namespace's own root
        (
            {"self": "0::/a/b\n", "a/cpu.max": "100000 100000\n", "a/b/cpu.max": "max 100000\n"},
            1.0,  # the parent's cap holds for the child group
        ),
        (
            {
                "self": "4:memory:/x\n1:cpu,cpuacct:/app\n",
                "cpu/app/cpu.cfs_quota_us": "250000\n",
                "cpu/app/cpu.cfs_period_us": "100000\n",
            },
            2.5,  # cgroup v1
        ),
        (
            {
                "self": "1:cpu:/app\n",
                "cpu/app/cpu.cfs_quota_us": "-1\n",
                "cpu/app/cpu.cfs_period_us": "100000\n",
            },
            None,
        ),
        ({"self": "0::/app\n", "app/cpu.max": "garbage\n"}, None),
    ],
)
def test_the_cgroup_cpu_quota_is_read_from_v2_or_v1_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str], quota: float | None
) -> None:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        path = tmp_path / "proc-self-cgroup" if name == "self" else root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.setattr(busypoll, "PROC_CGROUP", tmp_path / "proc-self-cgroup")
    monkeypatch.setattr(busypoll, "CGROUP_ROOT", root)
    assert busypoll.cgroup_cpu_quota() == (None if quota is None else pytest.approx(quota))
    monkeypatch.setattr(busypoll.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert busypoll.usable_cpus() == (4.0 if quota is None else pytest.approx(quota))


def test_a_peer_asks_for_polling_while_its_child_answers_quickly() -> None:
    async def main(loop: BusyPollLoop) -> None:
        with anyio.fail_after(STEP_S):
            async with (
                await anyio.open_process([sys.executable, str(CHILD)]) as process,
                peer_of(process) as peer,
            ):

                async def echo() -> None:
                    assert await peer.call("echo", {"n": 1}, timeout_s=STEP_S) == {"n": 1}

                await echo()  # the child has started, and
                await echo()  # this answer came quickly:
                asked = loop.asked
                await echo()
                assert loop.asked == asked + 1  # so this call asked for polling

                async def slow() -> None:
                    assert await peer.call("hold", {"n": 2}, timeout_s=STEP_S) == {"n": 2}

                async with anyio.create_task_group() as tg:
                    tg.start_soon(slow)
                    await anyio.sleep(2 * loop.quick_s)  # not a wait for something: slowness
                    await peer.notify("release")
                assert loop.asked == asked + 2
                await echo()
                assert loop.asked == asked + 2  # not asked for: the last answer was slow
                await echo()
                assert loop.asked == asked + 3  # asked again: the last answer was quick
                await peer.aclose()

    loop = BusyPollLoop(budget_s=BUDGET_S)
    try:
        loop.run_until_complete(loop.create_task(main(loop)))
    finally:
        loop.close()
