"""What other nodes changed, applied on this one; leases and materialisation (PackageManager).

`sync` compares this node's view with the truth (the store's records, or the shared
`extensions/`) and `refresh` re-reads one version another node announced; each difference is
told to the listeners (the pool drains what went stale) and this node's stale builds go,
unless a process still runs from them (`leases.py`). `materialise` builds this node's venv of
a stored record from its stored wheel. The manager's methods of the same names call these.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Final

from hiagent_host.packages.build import Request, build_and_commit
from hiagent_host.packages.leases import remove_build
from hiagent_host.packages.records import EventKind, PackageEvent, PackageRecord
from hiagent_host.packages.recovery import remove_tree, tidy_package
from hiagent_host.packages.remote import Key
from hiagent_host.storage import FileLock

if TYPE_CHECKING:
    from hiagent_host.packages.manager import PackageManager

log = logging.getLogger(__name__)

# The last user of an old build waits this long for the package lock to remove it; if an
# install holds the lock longer, that install's tidy-up removes the build instead.
RELEASE_LOCK_WAIT_S: Final = 5.0


def _no_progress(phase: str) -> None:
    pass


def sync(pm: PackageManager) -> None:
    """Compare this node's view with the truth (the store, or the shared records) and
    apply every difference: the listeners drain what changed, stale builds go."""
    if pm.remote is not None:
        truth = pm.remote.load()
    else:
        truth = {(r.dir_name, r.version_dir): r for r in pm.list_local()}
    with pm._seen_lock:
        seen = dict(pm._seen)
    if pm.remote is not None:
        seen = pm.remote.snapshot()
    for key in sorted(set(truth) | set(seen)):
        current = truth.get(key)
        if _build(seen.get(key)) != _build(current):
            current = _read(pm, key)  # the listing may predate a change applied meanwhile
        _apply(pm, key, current)
    if pm.remote is not None:  # what this node materialised of versions gone since
        for local in pm.list_local():
            key = (local.dir_name, local.version_dir)
            if local.build != _build(truth.get(key)):
                _drop_stale(pm, key, _read(pm, key))


def refresh(pm: PackageManager, dir_name: str, version_dir: str) -> None:
    """Another node says this version changed: read it again and apply the difference."""
    key = (dir_name, version_dir)
    _apply(pm, key, _read(pm, key))


def _read(pm: PackageManager, key: Key) -> PackageRecord | None:
    """The truth about one version, read now."""
    if pm.remote is not None:
        return pm.remote.fetch(*key)
    return pm._read_quietly(*key)


def _build(record: PackageRecord | None) -> str | None:
    return None if record is None else record.build


def _apply(pm: PackageManager, key: Key, current: PackageRecord | None) -> None:
    if pm.remote is not None:
        old = pm.remote.update(key, current)
    else:
        with pm._seen_lock:
            old = pm._seen.pop(key, None)
            if current is not None:
                pm._seen[key] = current
    if old is not None and current is not None and old.build == current.build:
        return
    if old is not None or current is not None:
        kind = (
            EventKind.DELETED if current is None
            else EventKind.REPLACED if old is not None
            else EventKind.INSTALLED
        )  # fmt: skip
        what = current or old
        if what is not None:
            pm._emit(PackageEvent(kind=kind, name=what.name, version=what.version, record=current))
    if pm.remote is not None:
        _drop_stale(pm, key, current)


def _drop_stale(pm: PackageManager, key: Key, current: PackageRecord | None) -> None:
    """Remove this node's materialised build of `key` if the store moved on from it."""
    dir_name, version_dir = key
    local = pm._read_quietly(dir_name, version_dir)
    if local is None or (current is not None and local.build == current.build):
        return
    lock = FileLock(pm.layout.lock_path(dir_name))
    if not lock.acquire(timeout_s=RELEASE_LOCK_WAIT_S):
        return  # an install or materialisation runs; its tidy-up takes care of it
    try:
        local = pm._read_quietly(dir_name, version_dir)
        if local is None or (current is not None and local.build == current.build):
            return
        remove_tree(pm.layout.record_dir(dir_name, version_dir))
        if current is None:
            remove_tree(pm.layout.data_dir(dir_name, version_dir))
        remove_build(pm.layout, dir_name, local.build)
        tidy_package(pm.layout, dir_name)
    finally:
        lock.release()


def release_build(pm: PackageManager, dir_name: str, version_dir: str, build: str) -> None:
    """This process's last child of `build` stopped: remove it unless it is current."""
    lock = FileLock(pm.layout.lock_path(dir_name))
    if not lock.acquire(timeout_s=RELEASE_LOCK_WAIT_S):
        return  # the install holding it tidies the package up itself
    try:
        if pm.remote is not None:
            current = pm.remote.find_key((dir_name, version_dir))
        else:
            current = pm._read_quietly(dir_name, version_dir)
        if current is not None and current.build == build:
            return
        if remove_build(pm.layout, dir_name, build):
            log.info("removed %s %s's old build %s", dir_name, version_dir, build)
            tidy_package(pm.layout, dir_name)  # and the package's directories, if now empty
    finally:
        lock.release()


def materialise(
    pm: PackageManager, record: PackageRecord, cancel: threading.Event | None = None
) -> None:
    """Build this node's venv of a stored record from its stored wheel (sha256 checked)."""
    if pm.remote is None:
        return
    cancel = cancel or threading.Event()
    with pm._locked(record.dir_name, cancel):
        local = pm._read_quietly(record.dir_name, record.version_dir)
        if local is not None and local.build == record.build:
            pm.remote.mark_materialised(record)
            return
        started = time.monotonic()
        with pm.remote.wheel_of(record) as wheel:
            contents = pm._inspect(wheel, record.filename)
            request = Request(
                contents, wheel, record.uri, record.filename,
                record.dir_name, record.version_dir,
            )  # fmt: skip
            build_and_commit(
                pm.config, pm.layout, request, donor=pm._bytecode_donor(),
                report=_no_progress, cancel=cancel, template=record,
            )  # fmt: skip
        pm.remote.mark_materialised(record)
        if local is not None:
            remove_build(pm.layout, record.dir_name, local.build)
    log.info(
        "materialised %s %s (build %s) in %.2f s",
        record.name, record.version, record.build, time.monotonic() - started,
    )  # fmt: skip
