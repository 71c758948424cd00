"""The builds this process runs plugin children from: materialised once, leased while used.

With a packages store, a version this node has not materialised yet is materialised before
its first child starts, once however many calls wait for it. While any child of a build
lives, this process holds the build's shared lease (`packages/leases.py`), so nobody removes
the directory under it; when the last one has stopped, the lease goes and, if the build is no
longer current, this process removes it (it may be its last user anywhere).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import anyio
import anyio.to_thread

from hiagent_host.packages import PackageManager, PackageRecord
from hiagent_host.pool.errors import PluginUnavailable
from hiagent_host.storage import FileLock

BuildKey = tuple[str, str]  # (dir_name, build)


def build_key(record: PackageRecord) -> BuildKey:
    return (record.dir_name, record.build)


class Builds:
    """Materialisations in progress and leases held, for one pool."""

    def __init__(self, packages: PackageManager) -> None:
        self.packages = packages
        self._leases: dict[BuildKey, FileLock] = {}
        self._materialising: dict[BuildKey, anyio.Lock] = {}

    async def materialise(self, record: PackageRecord) -> None:
        """Have the record's venv on this node (a no-op, and no suspension, when it is)."""
        if self.packages.is_materialised(record):
            return
        key = build_key(record)
        lock = self._materialising.setdefault(key, anyio.Lock())
        try:
            async with lock:
                if not self.packages.is_materialised(record):
                    await anyio.to_thread.run_sync(self.packages.materialise, record)
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._materialising.pop(key, None)

    def lease(self, record: PackageRecord) -> None:
        """Hold the build's lease (before a child of it starts)."""
        key = build_key(record)
        if key in self._leases:
            return
        lease = self.packages.lease(record)
        if lease is None:  # being removed under a stale record: the next call reads again
            raise PluginUnavailable(
                f"the build of {record.name} {record.version} this call found was "
                "replaced meanwhile; try again",
                data={"retry_after_s": 1},
            )
        self._leases[key] = lease

    def release(
        self,
        record: PackageRecord,
        live: Iterable[PackageRecord],
        spawn: Callable[..., object] | None,
    ) -> None:
        """A child of `record` ended: with no other `live` child of its build, let go of the
        lease and (through `spawn`, in a worker thread) remove the build unless current."""
        key = build_key(record)
        if any(build_key(r) == key for r in live):
            return
        lease = self._leases.pop(key, None)
        if lease is None:
            return
        lease.release()
        if spawn is not None:
            spawn(
                anyio.to_thread.run_sync,
                self.packages.release_build,
                record.dir_name,
                record.version_dir,
                record.build,
            )
