"""What the kernel says about a child's processes (via /proc), and signals to its whole group.

A zombie counts as gone: it has exited and holds nothing but its pid. (In some containers
pid 1 never reaps the orphans it inherits, so exited grandchildren stay zombies for good.)
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Final

PAGE_BYTES: Final = os.sysconf("SC_PAGE_SIZE")
PROC: Final = "/proc"
# How many pids after a parent's `descendants` tries before it scans the whole of /proc.
NEAR_PIDS: Final = 64


def signal_group(pgid: int, signum: signal.Signals) -> bool:
    """Send `signum` to every process of group `pgid`; False if the group is empty."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed its uid; the others still got the signal
        return True
    return True


def group_members(pgid: int) -> list[int]:
    """The pids of the live (non-zombie) processes in group `pgid`."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        pass
    try:
        entries = os.listdir(PROC)  # noqa: PTH208 - names only, no Path objects per pid
    except OSError:  # no /proc: the group exists, its members are unknown
        return [pgid]
    members = []
    for entry in entries:
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def descendants(pid: int, depth: int) -> list[int]:
    """`pid`'s first child, that one's first child, … (at most `depth`): the lowest-numbered
    live child at each step, looked for among the next pids first (a child's pid usually
    follows its parent's closely), then among all."""
    chain: list[int] = []
    parent = pid
    for _ in range(depth):
        child = _first_child(parent)
        if child is None:
            break
        chain.append(child)
        parent = child
    return chain


def _first_child(parent: int) -> int | None:
    for candidate in range(parent + 1, parent + NEAR_PIDS):
        fields = _stat_fields(candidate)
        if fields is not None and fields[0] != "Z" and int(fields[1]) == parent:
            return candidate
    try:
        entries = os.listdir(PROC)  # noqa: PTH208 - names only, no Path objects per pid
    except OSError:
        return None
    found = []
    for entry in entries:
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and fields[0] != "Z" and int(fields[1]) == parent:
                found.append(int(entry))
    return min(found, default=None)


def is_running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def rss_bytes(pid: int | None) -> int | None:
    """Resident set size of `pid` from /proc/<pid>/statm, or None if unknown."""
    if pid is None:
        return None
    try:
        with open(f"{PROC}/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return None


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: state, ppid, pgrp, …; None if gone."""
    with contextlib.suppress(OSError):
        with open(f"{PROC}/{pid}/stat", "rb") as f:
            raw = f.read()
        return raw[raw.rfind(b")") + 2 :].decode("ascii", "replace").split()
    return None
