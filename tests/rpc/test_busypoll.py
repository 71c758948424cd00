"""Busy polling: the loop polls while an answer is due, until it comes or the budget is spent;
peers ask for it while their child answers quickly; it is on only where it can pay off."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
import uvloop

from hiagent_host.rpc import busypoll
from hiagent_host.rpc.busypoll import BusyPoll, busy_poll_for
from tests.rpc.test_peer_process import CHILD, STEP_S, peer_of

# Bounds a wait that succeeds at once when the code is right.
WAIT_S = 10.0
# The peer test's budget: a loopback echo answers well within four of it (`quick_s`), the
# held call long after.
BUDGET_US = 50_000
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=sorted(LOOPS))
def loop(request: pytest.FixtureRequest) -> Iterator[asyncio.AbstractEventLoop]:
    made = LOOPS[request.param]()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def two_cpus(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(busypoll, "usable_cpus", lambda: 2.0)
    busypoll.polling_pays.cache_clear()
    yield
    busypoll.polling_pays.cache_clear()


@pytest.fixture
def spins(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the turns the loop polled (each yields the CPU once)."""
    counted = [0]

    def count() -> None:
        counted[0] += 1

    monkeypatch.setattr(busypoll, "_yield", count)
    return counted


def test_the_loop_polls_until_the_answer_comes_and_counts_a_hit(
    loop: asyncio.AbstractEventLoop, spins: list[int]
) -> None:
    poll = BusyPoll(loop, budget_s=WAIT_S)
    reading, writing = socket.socketpair()

    async def main() -> None:
        arrived = asyncio.Event()
        loop.add_reader(reading, arrived.set)
        poll.expect()
        sender = threading.Thread(target=writing.send, args=(b"x",))
        async with asyncio.timeout(WAIT_S):
            sender.start()
            await arrived.wait()
        sender.join()
        loop.remove_reader(reading)
        poll.settle()
        while poll.hits == 0:  # noqa: ASYNC110 - the polling callback counts it
            await asyncio.sleep(0)

    try:
        loop.run_until_complete(main())
    finally:
        reading.close()
        writing.close()
    assert spins[0] >= 1  # the loop polled while the answer was due
    assert (poll.hits, poll.misses) == (1, 0)


def test_a_poll_that_runs_out_counts_a_miss_and_stops(
    loop: asyncio.AbstractEventLoop, spins: list[int]
) -> None:
    poll = BusyPoll(loop, budget_s=0.005)

    async def main() -> None:
        poll.expect()
        async with asyncio.timeout(WAIT_S):
            while poll.misses == 0:  # noqa: ASYNC110 - the polling callback counts it
                await asyncio.sleep(0.001)
        polled = spins[0]
        await asyncio.sleep(0.01)
        assert spins[0] == polled  # no polling once the budget is spent
        poll.settle()

    loop.run_until_complete(main())
    assert (poll.hits, poll.misses) == (0, 1)


def test_timers_fire_on_time_while_the_loop_polls(
    loop: asyncio.AbstractEventLoop, spins: list[int]
) -> None:
    poll = BusyPoll(loop, budget_s=60.0)

    async def main() -> None:
        poll.expect()
        async with asyncio.timeout(WAIT_S):
            await asyncio.sleep(0.02)  # the timer fires, well before the budget ends
        assert poll.misses == 0  # it fired while the loop was still polling
        poll.settle()

    loop.run_until_complete(main())
    assert spins[0] >= 1


def test_one_poll_per_loop_and_only_with_a_budget_and_two_cpus(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    for cpus, budget_us, on in ((2.0, 200, True), (2.0, 0, False), (1.0, 200, False),
                                (1.5, 200, False)):  # fmt: skip
        monkeypatch.setattr(busypoll, "usable_cpus", lambda cpus=cpus: cpus)
        busypoll.polling_pays.cache_clear()
        made = busy_poll_for(loop, budget_us)
        assert (made is not None) is on, (cpus, budget_us)
        if made is not None:
            assert made is busy_poll_for(loop, budget_us)  # shared by the loop's peers
            assert made.budget_s == pytest.approx(200e-6)
    assert busy_poll_for(None, 200) is None  # not on asyncio
    busypoll.polling_pays.cache_clear()


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


@pytest.mark.usefixtures("two_cpus")
def test_a_peer_asks_for_polling_while_its_child_answers_quickly(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[int] = [0]
    expect = BusyPoll.expect

    def counting(self: BusyPoll) -> None:
        asked[0] += 1
        expect(self)

    monkeypatch.setattr(BusyPoll, "expect", counting)

    async def main() -> None:
        with anyio.fail_after(STEP_S):
            async with (
                await anyio.open_process([sys.executable, str(CHILD)]) as process,
                peer_of(process, busy_poll_us=BUDGET_US) as peer,
            ):
                poll = busy_poll_for(loop, BUDGET_US)
                assert poll is not None

                async def echo() -> None:
                    assert await peer.call("echo", {"n": 1}, timeout_s=STEP_S) == {"n": 1}

                await echo()  # the child has started, and
                await echo()  # this answer came quickly:
                before = asked[0]
                await echo()
                assert asked[0] == before + 1  # so this call asked for polling

                async def slow() -> None:
                    assert await peer.call("hold", {"n": 2}, timeout_s=STEP_S) == {"n": 2}

                async with anyio.create_task_group() as tg:
                    tg.start_soon(slow)
                    await anyio.sleep(2 * poll.quick_s)  # not a wait for something: slowness
                    await peer.notify("release")
                assert asked[0] == before + 2
                await echo()
                assert asked[0] == before + 2  # not asked for: the last answer was slow
                await echo()
                assert asked[0] == before + 3  # asked again: the last answer was quick
                await peer.aclose()

    loop.run_until_complete(loop.create_task(main()))
