"""Bring one package's directories back to the state its records describe.

An install commits by writing its record, a delete by renaming the record aside; everything
else is derived. So, with the package's lock held, `tidy_package` removes what no record
names (builds of interrupted or replaced installs that no process runs from any more (see
`leases.py`), links of deleted versions, things renamed
aside), removes records whose venv is gone, and re-points each version's link at the build
its record names. A record it cannot read makes it leave that version alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from hiagent_host.packages.layout import (
    RECORD_FILE,
    TRASH_PREFIX,
    Layout,
    build_version,
    trash_name,
)
from hiagent_host.packages.names import is_version_dir
from hiagent_host.packages.records import RecordUnreadable, read_record
from hiagent_host.storage import FileLock
from hiagent_host.storage.atomic import fsync_dir

log = logging.getLogger(__name__)

# Scratch directories of installs running in this process (a restarted container reuses pids).
_active_scratch: set[Path] = set()
_scratch_lock = threading.Lock()


def remove_tree(path: Path) -> bool:
    """Rename `path` aside, then remove it; False if it did not exist. Never follows links."""
    if path.is_symlink() or path.is_file():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            return True
        return False
    aside = path.with_name(trash_name())
    try:
        path.rename(aside)
    except FileNotFoundError:
        return False
    shutil.rmtree(aside, ignore_errors=True)
    if aside.exists():
        log.warning("cannot remove all of %s; the next tidy-up tries again", aside)
    return True


def point_link(link: Path, build: str) -> None:
    """Atomically make `link` a symlink to the sibling `build` (a real dir there is set aside)."""
    if link.exists() and not link.is_symlink():
        link.rename(link.with_name(trash_name()))
    tmp = link.with_name(f"{TRASH_PREFIX}link-{os.getpid()}-{link.name}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(build)
    tmp.replace(link)
    fsync_dir(link.parent)


def tidy_package(layout: Layout, dir_name: str) -> list[Path]:
    """Make `dir_name`'s directories agree with its records (lock held); return what went."""
    removed: list[Path] = []
    records_dir = layout.records_of(dir_name)
    venvs_dir = layout.venvs_of(dir_name)
    current: dict[str, str] = {}  # version dir → the build its record names
    unreadable: set[str] = set()  # version dirs whose record cannot be read: left alone

    for entry in _entries(records_dir):
        if entry.name.startswith("."):
            if remove_tree(entry):
                removed.append(entry)
            continue
        if entry.is_symlink() or not entry.is_dir() or not is_version_dir(entry.name):
            continue  # not ours
        try:
            record = read_record(entry / RECORD_FILE)
        except RecordUnreadable as exc:
            log.warning("leaving %s alone: %s", entry, exc)
            unreadable.add(entry.name)
            continue
        if record is not None and (venvs_dir / record.build / "pyvenv.cfg").is_file():
            current[entry.name] = record.build
            for stray in entry.glob(f".{RECORD_FILE}.*"):  # an interrupted atomic write
                stray.unlink(missing_ok=True)
            continue
        if record is not None:
            log.warning("removing %s: its venv %s is gone", entry, venvs_dir / record.build)
        if remove_tree(entry):
            removed.append(entry)

    for entry in _entries(venvs_dir):
        name = entry.name
        if name.startswith(TRASH_PREFIX):
            keep = False
        elif entry.is_symlink() and is_version_dir(name):
            keep = name in current or name in unreadable
        elif (version := build_version(name)) is not None and entry.is_dir():
            keep = (
                current.get(version) == name
                or version in unreadable
                or in_use(layout, dir_name, name)
            )
        else:
            continue  # not ours
        if not keep and remove_tree(entry):
            removed.append(entry)

    for version, build in current.items():
        link = venvs_dir / version
        if not link.is_symlink() or str(link.readlink()) != build:
            log.warning("pointing %s at %s, as its record says", link, build)
            point_link(link, build)

    for directory in (records_dir, venvs_dir):
        with contextlib.suppress(OSError):
            directory.rmdir()  # only if empty
    return removed


def in_use(layout: Layout, dir_name: str, build: str) -> bool:
    """Whether some process holds a lease on the build (see `leases.py`)."""
    path = layout.lease_path(dir_name, build)
    if not path.exists():
        return False
    probe = FileLock(path)
    if not probe.acquire(timeout_s=0):
        return True
    probe.release()
    return False


def _entries(directory: Path) -> list[Path]:
    try:
        return sorted(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


@contextlib.contextmanager
def scratch_dir(tmp_dir: Path) -> Iterator[Path]:
    """A fresh `<pid>-…` directory under `tmp_dir`, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=tmp_dir))
    with _scratch_lock:
        _active_scratch.add(path)
    try:
        yield path
    finally:
        remove_tree(path)
        with _scratch_lock:
            _active_scratch.discard(path)


def clean_scratch(tmp_dir: Path) -> list[Path]:
    """Remove the scratch directories of installs whose process is gone."""
    removed = []
    for entry in _entries(tmp_dir):
        pid = entry.name.partition("-")[0]
        with _scratch_lock:
            if entry in _active_scratch:
                continue
        if pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid)):
            continue
        if remove_tree(entry):
            removed.append(entry)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (it may belong to someone else)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
