"""Busy polling: the host's event loop polls for a plugin's answer briefly before it sleeps.

A quick tool answers in tens of microseconds, less time than the host process takes to be put
to sleep and woken again. Worse, on a virtual machine a sleeping vCPU gives its core away, so
the host comes back to cold caches and runs the rest of the request (the response, the access
log, the next request's parsing) markedly slower. So after a call is sent, the loop does not
block in `epoll_wait` at once: for up to `pool.busy_poll_us` it polls without blocking, and
only then sleeps for whatever time is left (Linux's `net.core.busy_poll` does the same for
sockets). Any event ends the polling, as does a timer falling due.

Measured on a 2-CPU VM, in process: a RunPluginTool of a quick tool cost the server 40–60 µs
more CPU than the echo route plus a bare pool call when its loop slept for the answer; a wait
of the same length spent spinning instead cost 5 µs. End to end, with polling, the call's p50
went from 0.40–0.54 ms to 0.33–0.38 ms (bench/http.py).

The cost is CPU: at most the budget per call, and only when the loop has nothing else to do
(under load it always has). Each `RpcPeer` asks for polling only while its child's answers
keep coming back quickly (within `QUICK_BUDGETS` budgets), so a plugin whose tools take
milliseconds or more costs one budget's worth of polling at most after each answer that came
fast. With fewer than two CPUs to run on, polling would only keep the child off the CPU it
needs, so `loop_factory` leaves it off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import selectors
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

# Where the cgroups that may cap this process's CPU time are named, and mounted.
PROC_CGROUP: Final = Path("/proc/self/cgroup")
CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
MIN_CPUS: Final = 2.0
# A child counts as quick while its last answer came within this many budgets: an answer that
# comes within the budget when polled for takes longer when the loop sleeps (the wake-up, the
# cold caches), and must not be mistaken for a slow one.
QUICK_BUDGETS: Final = 4


def _no_yield() -> None:
    pass


_yield: Callable[[], None] = getattr(os, "sched_yield", _no_yield)


class BusyPollSelector(selectors.DefaultSelector):
    """The platform's selector, polling without blocking until `poll_until` (monotonic)."""

    def __init__(self) -> None:
        super().__init__()
        self.poll_until = 0.0
        self.hits = 0  # polls that ended with an event
        self.misses = 0  # polls that ran out of time and then slept

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        select = super().select
        if timeout is not None and timeout <= 0:
            return select(0)
        now = time.monotonic()
        until = self.poll_until
        if now >= until:
            return select(timeout)
        stop = until if timeout is None else min(until, now + timeout)
        while True:
            ready = select(0)
            if ready:
                self.hits += 1
                return ready
            if time.monotonic() >= stop:
                break
            _yield()  # a process waiting for this CPU (the plugin's, perhaps) goes first
        self.misses += 1
        if timeout is not None:
            timeout = now + timeout - time.monotonic()
            if timeout <= 0:
                return []  # a timer is due: polling took the whole wait
        return select(timeout)


class BusyPollLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose selector polls for `budget_s` after `expect_answer`."""

    def __init__(self, budget_s: float) -> None:
        self._busy_selector = BusyPollSelector()
        super().__init__(self._busy_selector)
        self.budget_s = budget_s
        self.quick_s = budget_s * QUICK_BUDGETS  # see `QUICK_BUDGETS`
        self.asked = 0  # calls that asked for polling (a poll happens only if the loop idles)

    def expect_answer(self) -> None:
        """A request just left: poll for up to the budget before sleeping."""
        self.asked += 1
        until = time.monotonic() + self.budget_s
        if until > self._busy_selector.poll_until:
            self._busy_selector.poll_until = until

    @property
    def hits(self) -> int:
        """Polls that ended with an event (an answer, most often) before the budget ran out."""
        return self._busy_selector.hits

    @property
    def misses(self) -> int:
        """Polls that ran out of budget; the loop then slept as usual."""
        return self._busy_selector.misses


def busy_loop(loop: asyncio.AbstractEventLoop | None) -> BusyPollLoop | None:
    """`loop` if it busy-polls, else None."""
    return loop if isinstance(loop, BusyPollLoop) else None


def loop_factory(budget_us: int) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes the server's event loop: a `BusyPollLoop` when the budget is positive and
    the process may use at least two CPUs, else asyncio's usual loop."""
    if budget_us <= 0:
        log.info("busy polling for answers is off (pool.busy_poll_us = 0)")
        return asyncio.new_event_loop
    cpus = usable_cpus()
    if cpus < MIN_CPUS:
        log.info("busy polling for answers is off: this process may use %g CPU", cpus)
        return asyncio.new_event_loop
    log.info("busy polling for answers for up to %d µs", budget_us)
    budget_s = budget_us / 1_000_000
    return lambda: BusyPollLoop(budget_s)


def install_loop_policy(budget_us: int) -> None:
    """Have this process's new event loops made by `loop_factory(budget_us)`: for Hypercorn's
    worker processes, which make their loop themselves (through the policy, after loading the
    app). asyncio deprecates policies from Python 3.14 on; this one still works there, quietly.
    """
    factory = loop_factory(budget_us)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)

        class BusyPollPolicy(asyncio.DefaultEventLoopPolicy):
            def new_event_loop(self) -> asyncio.AbstractEventLoop:
                return factory()

        asyncio.set_event_loop_policy(BusyPollPolicy())


def usable_cpus() -> float:
    """The CPUs this process may run on: its affinity, capped by a cgroup CPU quota."""
    try:
        cpus = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        cpus = float(os.cpu_count() or 1)
    quota = cgroup_cpu_quota()
    return cpus if quota is None else min(cpus, quota)


def cgroup_cpu_quota() -> float | None:
    """CPUs' worth of time per period that this process's cgroup allows (v2 `cpu.max`, or v1
    `cpu.cfs_quota_us` over `cpu.cfs_period_us`), the tightest along its ancestors; or None."""
    try:
        lines = PROC_CGROUP.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:
            base, read = CGROUP_ROOT, _quota_v2
        elif "cpu" in controllers.split(","):
            base, read = CGROUP_ROOT / "cpu", _quota_v1
        else:
            continue
        group = base / path.strip().lstrip("/")
        for directory in (group, *group.parents[: len(group.parents) - len(base.parents)]):
            quota = read(directory)
            if quota is not None:
                quotas.append(quota)
    return min(quotas, default=None)


def _quota_v2(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text(encoding="utf-8").split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _quota_v1(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text(encoding="utf-8"))
        period = int((directory / "cpu.cfs_period_us").read_text(encoding="utf-8"))
        return None if quota < 0 else quota / period
    except (OSError, ValueError, ZeroDivisionError):
        return None
