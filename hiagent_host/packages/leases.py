"""Build leases: a build directory is never removed while a process anywhere runs from it.

Every process that runs plugin children of a build holds a shared `flock` on
`state/leases/<dir>/<build>.lease` for as long as any of them lives. Whoever wants to remove a
build that is no longer current (the installer that replaced it, a node applying a change
made elsewhere, recovery) must first take that lock exclusively, without waiting: if it
cannot, somebody still runs from the build and its last user removes it when its last child
has stopped. On a shared file system every node sees the same lease files, so this holds
across machines (flock over NFSv4 is a POSIX lock the server arbitrates).
"""

from __future__ import annotations

import contextlib
import logging

from hiagent_host.packages.layout import Layout
from hiagent_host.packages.recovery import remove_tree
from hiagent_host.storage import FileLock

log = logging.getLogger(__name__)


def take_lease(layout: Layout, dir_name: str, build: str) -> FileLock | None:
    """A shared lease on a build; None if it is being removed right now. (A build already
    gone is leased all the same: starting a process from it fails with its own error.)"""
    lease = FileLock(layout.lease_path(dir_name, build), shared=True)
    if not lease.acquire(timeout_s=0):
        return None  # its remover holds it exclusively right now
    return lease


def remove_build(layout: Layout, dir_name: str, build: str) -> bool:
    """Remove a build unless a process runs from it; True if it is gone now."""
    path = layout.lease_path(dir_name, build)
    build_dir = layout.build_dir(dir_name, build)
    exclusive = FileLock(path)
    if not exclusive.acquire(timeout_s=0):
        log.info("%s is still in use; its last user removes it", build_dir)
        return False
    try:
        remove_tree(build_dir)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # builds are never reused: nobody locks this name again
        with contextlib.suppress(OSError):
            path.parent.rmdir()
    finally:
        exclusive.release()
    return True
