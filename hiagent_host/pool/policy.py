"""Pool policy, apart from mechanism: when a crash-looping package may restart, whom to evict.

Both are pure: they are told what happened and what exists (with the time passed in), decide,
and never touch a process. `pool.py` acts on their answers.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar


@dataclass
class _History:
    crashes: deque[float] = field(default_factory=deque)
    blocked_until: float | None = None


class RestartPolicy:
    """More than `limit` crashes within `window_s` blocks new starts for `cooldown_s`.

    A crash is a child that exited without being asked to, or failed its handshake. When the
    cool-down has passed the package starts afresh with an empty history; `reset` (a reinstall)
    clears it at once.
    """

    def __init__(self, *, limit: int, window_s: float, cooldown_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self._history: dict[Hashable, _History] = {}

    def record_crash(self, key: Hashable, now: float) -> None:
        """Count a crash of `key`'s child; trip the breaker when there were too many."""
        history = self._history.setdefault(key, _History())
        history.crashes.append(now)
        while history.crashes and history.crashes[0] < now - self.window_s:
            history.crashes.popleft()
        if len(history.crashes) > self.limit:
            history.blocked_until = now + self.cooldown_s

    def blocked_for(self, key: Hashable, now: float) -> float | None:
        """Seconds until `key` may start a child again, or None if it may start now."""
        history = self._history.get(key)
        if history is None or history.blocked_until is None:
            return None
        if now < history.blocked_until:
            return history.blocked_until - now
        del self._history[key]  # the cool-down is over: a fresh start
        return None

    def crashes(self, key: Hashable, now: float) -> int:
        """Crashes of `key` within the window ending `now`."""
        history = self._history.get(key)
        if history is None:
            return 0
        return sum(1 for t in history.crashes if t >= now - self.window_s)

    def reset(self, key: Hashable) -> None:
        """Forget `key`'s crashes (it was reinstalled, replaced or deleted)."""
        self._history.pop(key, None)


class Evictable(Protocol):
    """What eviction needs to know about a child."""

    @property
    def evictable(self) -> bool: ...

    @property
    def last_used(self) -> float: ...


E = TypeVar("E", bound=Evictable)


def choose_victim(children: Iterable[E]) -> E | None:
    """The least recently used child that may be evicted (ready, no call in flight), if any."""
    candidates = [c for c in children if c.evictable]
    return min(candidates, key=lambda c: c.last_used) if candidates else None


def retry_after_s(acquire_timeout_s: float) -> int:
    """The `PoolExhausted` retry hint: whole seconds, the wait that just failed, at least 1."""
    return max(1, math.ceil(acquire_timeout_s))
