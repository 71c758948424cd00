"""The package manager: install, read, list, delete and recover plugin package versions.

An install is a pipeline: fetch → validate → (package lock) build a venv beside the current
one → probe it → commit its record → point the version's link at it → tell the listeners →
remove the old build (unless a process still runs from it: `leases.py`). Until the record is
written nothing a reader sees has changed; after it, the new build is current. Everything is
synchronous; the API and the job runners call it from worker threads, and a per-package file
lock (plus the coordinator's cluster-wide lock) serialises writers across processes.

With an S3 packages store (`[store] backend = "s3"`) the store's record is the commit and
`remote.py` keeps this node's view of it and materialises venvs on first use.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

from packaging.version import Version

from hiagent_host.config import Config, redact_url
from hiagent_host.errors import INTERNAL_ERROR, HostError
from hiagent_host.packages import cache, changes, names
from hiagent_host.packages.base_venv import clean_base
from hiagent_host.packages.build import (
    DOWNLOADING,
    VALIDATING,
    Progress,
    Request,
    build_and_commit,
    warm_base,
)
from hiagent_host.packages.coordinator import Coordinator, LocalCoordinator
from hiagent_host.packages.errors import (
    AlreadyInstalled,
    Cancelled,
    PackageBusy,
    PackageNotFound,
)
from hiagent_host.packages.fetch import (
    FetchedWheel,
    OnBytes,
    clean_partials,
    fetch,
    no_bytes,
    store_upload,
)
from hiagent_host.packages.layout import RECORD_FILE, Layout, package_dirs
from hiagent_host.packages.leases import remove_build, take_lease
from hiagent_host.packages.records import (
    EventKind,
    PackageEvent,
    PackageRecord,
    RecordUnreadable,
    read_record,
)
from hiagent_host.packages.recovery import clean_scratch, remove_tree, tidy_package
from hiagent_host.packages.remote import Key, RemoteView
from hiagent_host.packages.wheel import WheelContents, WheelSummary, inspect_wheel
from hiagent_host.storage import FileLock

log = logging.getLogger(__name__)

Listener = Callable[[PackageEvent], None]

# A waiting writer re-checks its cancel event this often.
LOCK_SLICE_S: Final = 0.2
# Beyond the longest a peer's venv build plus probe may take, a held lock means trouble.
LOCK_MARGIN_S: Final = 30.0


def _no_progress(phase: str) -> None:
    pass


class PackageManager:
    """Installed plugin packages of one configuration (see docs/operations.md)."""

    def __init__(
        self,
        config: Config,
        *,
        coordinator: Coordinator | None = None,
        load_on_demand: bool = True,
    ) -> None:
        """`load_on_demand=False` (servers): the store's records are loaded by `sync`, and a
        read before that succeeded is StorageUnavailable instead of a store request."""
        self.config = config
        self.layout = Layout(config)
        self.coordinator: Coordinator = coordinator or LocalCoordinator()
        self._listeners: list[Listener] = []
        self._records: dict[Path, tuple[tuple[int, int, int], PackageRecord]] = {}
        self.remote = (
            RemoteView(config, self.layout, load_on_demand=load_on_demand)
            if config.store.backend == "s3"
            else None
        )
        # What this node last saw of each version (local backend), to notice others' changes.
        self._seen: dict[Key, PackageRecord] = {}
        self._seen_lock = threading.Lock()

    # ---- listeners ---------------------------------------------------------------------

    def add_listener(self, callback: Listener) -> None:
        """Call `callback` after a version is installed, replaced or deleted.

        It runs in the installing thread with the package's lock held, after the new record
        is current and before the old build is removed, so it may let processes of the old
        build drain; it must not install or delete that same package itself.
        """
        self._listeners.append(callback)

    def remove_listener(self, callback: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(callback)

    def _emit(self, event: PackageEvent) -> None:
        for callback in list(self._listeners):
            try:
                callback(event)
            except Exception:  # a listener's bug must not undo an install
                log.exception("package listener %r failed on %s", callback, event.kind)

    # ---- reading -----------------------------------------------------------------------

    def get(self, name: str, version: str) -> PackageRecord:
        """The installed version of `name` (any PEP 503 spelling) equal to `version`."""
        dir_name = names.dir_name(name)
        wanted = names.parse_version(version)
        if self.remote is not None:
            record = self.remote.find(dir_name, wanted)
        else:
            version_dir = self._find(dir_name, wanted)
            record = None if version_dir is None else self._read(dir_name, version_dir)
        if record is None:
            raise PackageNotFound(
                f"package {name} {version} is not installed",
                data={"name": name, "version": version},
            )
        return record

    def lookup(self, name: str, version: str) -> PackageRecord:
        """`get`, and with a packages store, on a miss ask the store itself (blocking I/O:
        call it from a worker thread)."""
        try:
            return self.get(name, version)
        except PackageNotFound:
            if self.remote is None:
                raise
        dir_name = names.dir_name(name)
        version_dir = names.version_dir(names.parse_version(version))
        if self.remote.missed_recently((dir_name, version_dir)):
            raise PackageNotFound(
                f"package {name} {version} is not installed",
                data={"name": name, "version": version},
            )
        self.refresh(dir_name, version_dir)
        try:
            return self.get(name, version)
        except PackageNotFound:
            self.remote.note_miss((dir_name, version_dir))
            raise

    def list(self) -> list[PackageRecord]:
        """Every installed package version, by name and version (the store's, with one)."""
        if self.remote is not None:
            return self.remote.records()
        return self.list_local()

    def list_local(self) -> builtins.list[PackageRecord]:
        """Every version this node's directories hold a venv of."""
        records = []
        for dir_name in package_dirs(self.layout.extensions_dir):
            for entry in _entries(self.layout.extensions_dir / dir_name):
                if names.is_version_dir(entry):
                    with contextlib.suppress(HostError):
                        if (record := self._read(dir_name, entry)) is not None:
                            records.append(record)
        return sorted(records, key=lambda r: (r.dir_name, Version(r.version)))

    def read_metadata(self, uri: str, filename: str) -> WheelSummary:
        """Fetch and validate a wheel and say what it holds; installs nothing."""
        names.parse_filename(filename)
        with self._fetched(uri, filename, threading.Event(), lambda: None) as (wheel, contents):
            return _summary(contents, wheel, redact_url(uri), filename)

    def venv_dir(self, record: PackageRecord) -> Path:
        """The real directory of the record's venv (pinned: it never changes under a process)."""
        return self.layout.build_dir(record.dir_name, record.build)

    def venv_python(self, record: PackageRecord) -> Path:
        return self.venv_dir(record) / "bin" / "python"

    def data_dir(self, record: PackageRecord) -> Path:
        """The writable data directory of the record's package version (created on demand)."""
        path = self.layout.data_dir(record.dir_name, record.version_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log_path(self, name: str, version: str) -> Path:
        """`state/logs/<dir>/<version>.log`; its directory exists."""
        dir_name = names.dir_name(name)
        wanted = names.parse_version(version)
        version_dir = self._find(dir_name, wanted) or names.version_dir(wanted)
        path = self.layout.log_path(dir_name, version_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # ---- install -----------------------------------------------------------------------

    def install(
        self,
        uri: str,
        filename: str,
        *,
        force: bool,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        on_bytes: OnBytes | None = None,
    ) -> PackageRecord:
        """Install the wheel at `uri` (named `filename`) into a venv of its own.

        `progress` is told each phase as it begins; `on_bytes` the bytes downloaded so far.
        """
        report = progress or _no_progress
        cancel = cancel or threading.Event()
        started = time.monotonic()
        file_name, file_version = names.parse_filename(filename)
        dir_name = names.dir_name(file_name)
        if not force:
            self._refuse_installed(dir_name, file_version, file_name)
        report(DOWNLOADING)
        before = self._peek(dir_name, file_version)

        def validating() -> None:
            _check(cancel)
            report(VALIDATING)

        with (
            self._fetched(uri, filename, cancel, validating, on_bytes) as (wheel, contents),
            self._stored(wheel, filename),
            self.coordinator.lock(dir_name, cancel),
            self._locked(dir_name, cancel),
        ):
            tidy_package(self.layout, dir_name)
            old = self._current(dir_name, file_version)
            if old is not None and not force:
                self._refuse_installed(dir_name, file_version, file_name, old)
            if old is not None and _won_by_another(old, before, wheel):
                log.info("%s %s: the same wheel was installed meanwhile", old.name, old.version)
                return old
            version_dir = old.version_dir if old else names.version_dir(file_version)
            local_old = self._read_quietly(dir_name, version_dir)
            # the record keeps the uri without its password (it was only for the download)
            request = Request(contents, wheel, redact_url(uri), filename, dir_name, version_dir)
            record = build_and_commit(
                self.config, self.layout, request,
                donor=self._bytecode_donor(), report=report, cancel=cancel,
            )  # fmt: skip
            if self.remote is not None:
                self.remote.commit(record, local_old)  # undoes the local commit if it fails
            self._announce(dir_name, version_dir, record)
            kind = EventKind.REPLACED if old else EventKind.INSTALLED
            self._emit(
                PackageEvent(kind=kind, name=record.name, version=record.version, record=record)
            )
            if local_old is not None and local_old.build != record.build:
                remove_build(self.layout, dir_name, local_old.build)
        log.info(
            "%s %s %s in %.2f s (%s)", kind, record.name, record.version,
            time.monotonic() - started, record.installer,
        )  # fmt: skip
        return record

    def warm_base(self, cancel: threading.Event | None = None) -> bool:
        """Build what every install starts from (the base venv) unless it exists; whether it
        does now. The server runs this in the background at start."""
        return warm_base(self.config, self.layout, cancel or threading.Event())

    def _bytecode_donor(self) -> Path | None:
        """The most recently installed venv: its compiled SDK spares the probe a compile."""
        newest = max(self.list_local(), key=lambda r: r.installed_at, default=None)
        return None if newest is None else self.venv_dir(newest)

    def store_upload(self, path: Path, filename: str) -> str:
        """Keep an uploaded wheel file in the fetch cache; the `file://` uri to install it from.

        The file name is checked as an install checks it, the size against the same cap;
        the wheel itself is validated by the install that follows. `path` is left in place.
        """
        names.parse_filename(filename)
        wheel = store_upload(
            path, filename, cache_dir=self.layout.cache_dir, config=self.config.packages
        )
        return wheel.path.as_uri()

    # ---- delete ------------------------------------------------------------------------

    def delete(self, name: str, version: str) -> bool:
        """Remove an installed version (record, venv, data); False if it was not installed."""
        dir_name = names.dir_name(name)
        wanted = names.parse_version(version)
        if self.remote is None and self._find(dir_name, wanted) is None:
            return False
        with self.coordinator.lock(dir_name, None), self._locked(dir_name, None):
            if self.remote is not None:
                gone = self.remote.delete(dir_name, wanted)  # the commit, in the store
                local = self._find(dir_name, wanted)
                version_dir = gone.version_dir if gone else local
                record = gone or (self._read_quietly(dir_name, local) if local else None)
                if version_dir is None:
                    return False
            else:
                version_dir = self._find(dir_name, wanted)
                if version_dir is None:
                    return False
                record = self._read_quietly(dir_name, version_dir)
            remove_tree(self.layout.record_dir(dir_name, version_dir))  # the commit (local)
            self._announce(dir_name, version_dir, None)
            self._emit(
                PackageEvent(
                    kind=EventKind.DELETED,
                    name=record.name if record else name,
                    version=record.version if record else version,
                )
            )
            remove_tree(self.layout.data_dir(dir_name, version_dir))
            tidy_package(self.layout, dir_name)
        log.info("deleted %s %s", name, version)
        return True

    # ---- start-up ----------------------------------------------------------------------

    def recover(self) -> builtins.list[Path]:
        """Remove what interrupted installs and deletes left behind; return what went."""
        self.layout.ensure_roots()
        removed = clean_partials(self.layout.cache_dir)
        removed += clean_scratch(self.layout.tmp_dir)
        removed += clean_base(self.layout)
        dirs = set(package_dirs(self.layout.extensions_dir))
        dirs |= set(package_dirs(self.layout.venvs_dir))
        for dir_name in sorted(dirs):
            try:
                lock = FileLock(self.layout.lock_path(dir_name))
            except HostError as exc:
                log.warning("skipping %r during recovery: %s", dir_name, exc.message)
                continue
            if not lock.acquire(timeout_s=0):
                continue  # another process is installing or deleting it right now
            try:
                removed += tidy_package(self.layout, dir_name)
            except HostError as exc:  # e.g. a package directory that is a link elsewhere
                log.warning("skipping %r during recovery: %s", dir_name, exc.message)
            finally:
                lock.release()
        for path in removed:
            log.info("recovery removed %s", path)
        return removed

    # ---- what other nodes changed (changes.py) -----------------------------------------

    def sync(self) -> None:
        """Compare this node's view with the truth and apply every difference."""
        changes.sync(self)

    def refresh(self, dir_name: str, version_dir: str) -> None:
        """Another node says this version changed: read it again, apply the difference."""
        changes.refresh(self, dir_name, version_dir)

    def release_build(self, dir_name: str, version_dir: str, build: str) -> None:
        """This process's last child of `build` stopped: remove it unless it is current."""
        changes.release_build(self, dir_name, version_dir, build)

    def materialise(self, record: PackageRecord, cancel: threading.Event | None = None) -> None:
        """Build this node's venv of a stored record from its stored wheel."""
        changes.materialise(self, record, cancel)

    def lease(self, record: PackageRecord) -> FileLock | None:
        """A shared lease on the record's build, for as long as processes run from it; None
        if the build is being removed (the record was stale)."""
        return take_lease(self.layout, record.dir_name, record.build)

    def is_materialised(self, record: PackageRecord) -> bool:
        """Whether this node has the record's venv (always, without a packages store)."""
        return self.remote is None or self.remote.is_materialised(record)

    # ---- helpers -----------------------------------------------------------------------

    def _announce(self, dir_name: str, version_dir: str, record: PackageRecord | None) -> None:
        """The change is committed: remember it, and tell the other nodes."""
        key = (dir_name, version_dir)
        if self.remote is not None:
            self.remote.update(key, record)
            if record is not None:
                self.remote.mark_materialised(record)
        else:
            with self._seen_lock:
                self._seen.pop(key, None)
                if record is not None:
                    self._seen[key] = record
        try:
            self.coordinator.announce(dir_name, version_dir)
        except HostError as exc:  # the others catch up at their next resync
            log.warning("could not announce the change of %s %s: %s", *key, exc.message)

    def _peek(self, dir_name: str, version: Version) -> PackageRecord | None:
        """What this node believes is installed, without asking anyone."""
        if self.remote is not None:
            return self.remote.find(dir_name, version)
        return self._current(dir_name, version)

    @contextlib.contextmanager
    def _stored(self, wheel: FetchedWheel, filename: str) -> Iterator[None]:
        """With a packages store, the wheel is in it first: no record may name a wheel the
        store lacks (an unreachable store fails the install here, before any build)."""
        if self.remote is not None:
            self.remote.store.put_wheel(wheel.sha256, filename, wheel.path)
        yield

    @contextlib.contextmanager
    def _fetched(
        self,
        uri: str,
        filename: str,
        cancel: threading.Event,
        validating: Callable[[], None],
        on_bytes: OnBytes | None = None,
    ) -> Iterator[tuple[FetchedWheel, WheelContents]]:
        """The fetched and validated wheel, in use (never evicted) for the block; a wheel that
        fails validation leaves the cache; the cache is trimmed afterwards."""
        cfg = self.config.packages
        wheel = self._fetch(uri, filename, cancel, on_bytes)
        try:
            with cache.using(wheel.path):
                validating()
                try:
                    contents = self._inspect(wheel, filename)
                except HostError:
                    cache.forget(wheel.path)
                    raise
                yield wheel, contents
        finally:
            cache.trim(
                self.layout.cache_dir,
                max_bytes=cfg.max_cache_bytes,
                min_idle_s=cfg.install_timeout_s,
            )

    def _fetch(
        self, uri: str, filename: str, cancel: threading.Event, on_bytes: OnBytes | None = None
    ) -> FetchedWheel:
        return fetch(
            uri, filename, cache_dir=self.layout.cache_dir, config=self.config.packages,
            cancel=cancel, on_bytes=on_bytes or no_bytes, also_allowed=(self.layout.cache_dir,),
        )  # fmt: skip

    def _inspect(self, wheel: FetchedWheel, filename: str) -> WheelContents:
        return inspect_wheel(
            wheel.path, filename, max_unpacked_bytes=self.config.packages.max_unpacked_bytes
        )

    def _find(self, dir_name: str, version: Version) -> str | None:
        """The version directory of an installed version equal to `version` (PEP 440)."""
        root = self.layout.records_of(dir_name)
        direct = names.version_dir(version)
        if (root / direct / RECORD_FILE).is_file():
            return direct
        for entry in _entries(root):
            if (
                names.is_version_dir(entry)
                and Version(entry) == version
                and (root / entry / RECORD_FILE).is_file()
            ):
                return entry
        return None

    def _current(self, dir_name: str, version: Version) -> PackageRecord | None:
        if self.remote is not None:
            return self.remote.current(dir_name, version)
        version_dir = self._find(dir_name, version)
        return None if version_dir is None else self._read(dir_name, version_dir)

    def _read(self, dir_name: str, version_dir: str) -> PackageRecord | None:
        """The record, from a cache keyed by the file's identity (records are replaced whole)."""
        path = self.layout.record_path(dir_name, version_dir)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._records.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            record = read_record(path)
        except RecordUnreadable as exc:
            log.warning("%s", exc)
            raise HostError(
                f"the record of {dir_name} {version_dir} is unreadable", code=INTERNAL_ERROR
            ) from exc
        if record is not None:
            self._records[path] = (key, record)
        return record

    def _read_quietly(self, dir_name: str, version_dir: str) -> PackageRecord | None:
        try:
            return self._read(dir_name, version_dir)
        except HostError:
            return None

    def _refuse_installed(
        self, dir_name: str, version: Version, name: str, found: PackageRecord | None = None
    ) -> None:
        if found is not None or self._peek(dir_name, version) is not None:
            raise AlreadyInstalled(
                f"{name} {version} is already installed (force replaces it)",
                data={"name": name, "version": str(version)},
            )

    @contextlib.contextmanager
    def _locked(self, dir_name: str, cancel: threading.Event | None) -> Iterator[None]:
        """Hold the package's cross-process lock, waiting boundedly and cancellably."""
        cfg = self.config.packages
        wait_s = cfg.install_timeout_s + cfg.probe_timeout_s + LOCK_MARGIN_S
        deadline = time.monotonic() + wait_s
        lock = FileLock(self.layout.lock_path(dir_name))
        while not lock.acquire(timeout_s=LOCK_SLICE_S):
            if cancel is not None and cancel.is_set():
                raise Cancelled("install cancelled while waiting for the package lock")
            if time.monotonic() > deadline:
                raise PackageBusy(
                    f"{dir_name} stayed locked by another install or delete for {wait_s:.0f} s",
                    data={"package": dir_name},
                )
        try:
            yield
        finally:
            lock.release()


def _won_by_another(old: PackageRecord, before: PackageRecord | None, wheel: FetchedWheel) -> bool:
    """A forced install found that, while it waited for the lock, another node installed
    this very wheel: that install's result is its result."""
    if old.wheel_sha256 != wheel.sha256:
        return False
    return before is None or before.build != old.build


def _check(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise Cancelled("install cancelled")


def _entries(directory: Path) -> list[str]:
    try:
        return sorted(p.name for p in directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _summary(contents: WheelContents, wheel: FetchedWheel, uri: str, filename: str) -> WheelSummary:
    return WheelSummary(
        name=contents.name,
        version=contents.version,
        uri=uri,
        filename=filename,
        plugins=contents.plugins,
        sha256=wheel.sha256,
        size=wheel.size,
        requires_dist=contents.requires_dist,
        bundled_wheels=[m.rpartition("/")[2] for m in contents.bundled_wheels],
    )
