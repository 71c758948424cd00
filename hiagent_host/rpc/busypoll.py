"""Busy polling: while a quick answer is due, the server's event loop polls instead of sleeping.

A quick tool answers in tens of microseconds, less time than the host process takes to be put
to sleep and woken again. Worse, on a virtual machine a sleeping vCPU gives its core away, so
the host comes back to cold caches and runs the rest of the request (the response, the access
log, the next request's parsing) markedly slower. So after a call is sent, the loop does not
block in `epoll_wait` at once: for up to `pool.busy_poll_us` it polls without blocking (Linux's
`net.core.busy_poll` does the same for sockets).

How, with public interfaces only: an event loop that has a callback ready polls its selector
without blocking (asyncio's and uvloop's alike), so a callback that reschedules itself with
`loop.call_soon` keeps the loop polling. It stops once every answer asked for has come, or
the budget is spent; between two turns it yields the CPU (`os.sched_yield`), so the plugin's
process, if it waits for this CPU, runs first. An earlier version subclassed the loop's
selector and installed it through asyncio's deprecated loop policy; bench/http.py measured
the two in one run on the shared 2-CPU VM (`--baseline-ref` the earlier commit, 7 rounds, load
average about 5): RunPluginTool p50 at concurrency 1 2.32 ms now against 2.53 ms then, CPU
per request at 32 connections 0.98 × (on uvloop, which this version allows).

The cost is CPU: at most the budget per call, and only when the loop has nothing else to do
(under load it always has). A peer asks for polling only while its child's answers keep coming
back quickly (within `QUICK_BUDGETS` budgets), so a plugin whose tools take milliseconds or
more costs one budget's worth of polling at most after each answer that came fast. With fewer
than two CPUs to run on, polling would only keep the child off the CPU it needs, so
`busy_poll_for` leaves it off.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Final

from hiagent_host.rpc.pending import running_asyncio_loop

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


class BusyPoll:
    """One event loop's polling for answers: `expect()` when a call is sent, `settle()` once
    its caller has the answer (or gave up)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, budget_s: float) -> None:
        self._loop = loop
        self.budget_s = budget_s
        self.quick_s = budget_s * QUICK_BUDGETS  # see `QUICK_BUDGETS`
        self._until = 0.0
        self._waiting = 0
        self._spinning = False
        self.hits = 0  # polls that ended because every answer asked for had come
        self.misses = 0  # polls that ran out of budget; the loop then slept as usual

    def expect(self) -> None:
        """A request just left: keep the loop polling for up to the budget from now."""
        self._waiting += 1
        self._until = self._loop.time() + self.budget_s
        if not self._spinning:
            self._spinning = True
            self._loop.call_soon(self._spin)

    def settle(self) -> None:
        """The caller of an `expect()` has its answer, or stopped waiting for it."""
        self._waiting -= 1

    def _spin(self) -> None:
        if self._waiting <= 0:
            self._spinning = False
            self.hits += 1
        elif self._loop.time() >= self._until:
            self._spinning = False
            self.misses += 1
        else:
            _yield()  # a process waiting for this CPU (the plugin's, perhaps) goes first
            self._loop.call_soon(self._spin)


_polls: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BusyPoll | None] = (
    weakref.WeakKeyDictionary()
)


def busy_poll_for(loop: asyncio.AbstractEventLoop | None, budget_us: int) -> BusyPoll | None:
    """The `BusyPoll` shared by everything on `loop` (made on first use), or None when polling
    is off: no asyncio loop, a zero budget, or fewer than `MIN_CPUS` usable CPUs."""
    if loop is None or budget_us <= 0 or not polling_pays():
        return None
    try:
        return _polls[loop]
    except KeyError:
        poll = _polls[loop] = BusyPoll(loop, budget_us / 1_000_000)
        return poll


def running_busy_poll(budget_us: int) -> BusyPoll | None:
    """`busy_poll_for` the asyncio loop running the current task, if any."""
    return busy_poll_for(running_asyncio_loop(), budget_us)


@functools.cache
def polling_pays() -> bool:
    """Whether this process may use at least `MIN_CPUS` CPUs (said once in the log)."""
    cpus = usable_cpus()
    if cpus < MIN_CPUS:
        log.info("busy polling for answers is off: this process may use %g CPU", cpus)
        return False
    log.info("busy polling for quick answers (pool.busy_poll_us)")
    return True


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
