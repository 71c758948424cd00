"""This node's view of an S3 packages store, and the wheels it materialises venvs from.

With `[store] backend = "s3"` the store's records are the truth: a version is installed
exactly when the store holds its record, and every record's wheel is in the store first.
`RemoteView` keeps every record in memory (loaded once, then changed by `update` when this
node or another one changes something), so reading a record never costs a store request;
`extensions/` on this node holds only the records of what it has materialised (the same
build name as the store's record, with this node's own venv path).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import msgspec
from packaging.version import InvalidVersion, Version

from hiagent_host.config import Config
from hiagent_host.errors import STORED_WHEEL_CORRUPT, HostError
from hiagent_host.packages import cache, names
from hiagent_host.packages.fetch import FetchedWheel
from hiagent_host.packages.layout import Layout, package_dirs
from hiagent_host.packages.records import (
    PackageRecord,
    RecordUnreadable,
    decode_record,
    encode_record,
    read_record,
    write_record,
)
from hiagent_host.packages.recovery import point_link, remove_tree, scratch_dir
from hiagent_host.storage import safe_join
from hiagent_host.store import S3Store, StorageUnavailable
from hiagent_host.store.s3 import RETRY_AFTER_S

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (dir_name, version_dir)

HASH_CHUNK_BYTES: Final = 1024 * 1024
# A version the store did not have is not asked for again for this long (calls naming a
# missing package must not become a store request each); an announced change clears it.
MISS_TTL_S: Final = 1.0
MISSES_MAX: Final = 4096


class RemoteView:
    """The store's records as this node knows them; see the module docstring."""

    def __init__(self, config: Config, layout: Layout, *, load_on_demand: bool) -> None:
        self.store = S3Store(config.store)
        self._load_on_demand = load_on_demand
        self.layout = layout
        self._view: dict[Key, PackageRecord] = {}
        self._materialised: dict[Key, str] = {}  # key → the build this node has
        self._lock = threading.Lock()
        self._loaded = False
        self._misses: dict[Key, float] = {}  # key → when the store last lacked it
        # Stored wheels whose bytes did not match their record: `<filename>` → what was seen.
        self.integrity_failures: dict[str, str] = {}

    # ---- reading (memory only, once loaded) ---------------------------------------------

    def find(self, dir_name: str, version: Version) -> PackageRecord | None:
        self._ensure_loaded()
        with self._lock:
            record = self._view.get((dir_name, names.version_dir(version)))
            if record is not None:
                return record
            for (d, v), candidate in self._view.items():
                if d == dir_name and _equal(v, version):
                    return candidate
        return None

    def find_key(self, key: Key) -> PackageRecord | None:
        self._ensure_loaded()
        with self._lock:
            return self._view.get(key)

    def snapshot(self) -> dict[Key, PackageRecord]:
        """This node's whole view, as it is now."""
        with self._lock:
            return dict(self._view)

    def records(self) -> list[PackageRecord]:
        self._ensure_loaded()
        with self._lock:
            found = list(self._view.values())
        return sorted(found, key=lambda r: (r.dir_name, Version(r.version)))

    def is_materialised(self, record: PackageRecord) -> bool:
        return self._materialised.get((record.dir_name, record.version_dir)) == record.build

    def materialised(self) -> dict[Key, str]:
        """What this node has materialised: key → build."""
        with self._lock:
            return dict(self._materialised)

    def missed_recently(self, key: Key) -> bool:
        at = self._misses.get(key)
        return at is not None and time.monotonic() - at < MISS_TTL_S

    def note_miss(self, key: Key) -> None:
        if len(self._misses) >= MISSES_MAX:
            self._misses.clear()
        self._misses[key] = time.monotonic()

    def mark_materialised(self, record: PackageRecord) -> None:
        with self._lock:
            self._materialised[(record.dir_name, record.version_dir)] = record.build

    # ---- the store ---------------------------------------------------------------------

    def load(self) -> dict[Key, PackageRecord]:
        """Every record in the store (StorageUnavailable if it cannot be listed)."""
        found: dict[Key, PackageRecord] = {}
        for key, data in self.store.list_records():
            try:
                record = self._here(decode_record(data, key))
            except RecordUnreadable as exc:
                log.warning("skipping an unreadable record in the store: %s", exc)
                continue
            found[(record.dir_name, record.version_dir)] = record
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    self._view = dict(found)
                    self._materialised = self._scan_local(found)
                    self._loaded = True
        return found

    def fetch(self, dir_name: str, version_dir: str) -> PackageRecord | None:
        """The store's record of one version, read now."""
        data = self.store.get_record(dir_name, version_dir)
        if data is None:
            return None
        try:
            return self._here(decode_record(data, self.store.record_key(dir_name, version_dir)))
        except RecordUnreadable as exc:
            log.warning("an unreadable record in the store: %s", exc)
            return None

    def current(self, dir_name: str, version: Version) -> PackageRecord | None:
        """The store's record of a version (any PEP 440-equal spelling), read now."""
        record = self.fetch(dir_name, names.version_dir(version))
        if record is not None:
            return record
        known = self.find(dir_name, version)
        return None if known is None else self.fetch(dir_name, known.version_dir)

    def update(self, key: Key, record: PackageRecord | None) -> PackageRecord | None:
        """Make `record` (None: deleted) this node's view of `key`; return what it was."""
        self._misses.pop(key, None)
        with self._lock:
            old = self._view.pop(key, None)
            if record is not None:
                self._view[key] = record
            if record is None or self._materialised.get(key) != record.build:
                self._materialised.pop(key, None)
        return old

    def commit(self, record: PackageRecord, local_old: PackageRecord | None) -> None:
        """Write the store's record (the commit point); if that fails, put this node's
        directories back as they were and raise."""
        try:
            self.store.put_record(record.dir_name, record.version_dir, encode_record(record))
        except HostError:
            path = self.layout.record_path(record.dir_name, record.version_dir)
            if local_old is not None:
                write_record(path, local_old)
                point_link(
                    self.layout.venv_link(record.dir_name, record.version_dir), local_old.build
                )
            else:
                remove_tree(self.layout.record_dir(record.dir_name, record.version_dir))
            remove_tree(self.layout.build_dir(record.dir_name, record.build))
            raise

    def delete(self, dir_name: str, version: Version) -> PackageRecord | None:
        """Delete the store's record (the commit), then its wheel; what was deleted."""
        record = self.current(dir_name, version)
        if record is None:
            return None
        self.store.delete_record(dir_name, record.version_dir)
        try:  # a wheel belongs to one version, whose lock is held: nobody else needs it
            self.store.delete_wheel(record.wheel_sha256, record.filename)
        except HostError as exc:
            log.warning("the wheel of %s %s stays in the store: %s", dir_name, version, exc)
        return record

    @contextlib.contextmanager
    def wheel_of(self, record: PackageRecord) -> Iterator[FetchedWheel]:
        """The record's wheel in this node's cache, copied from the store if need be and
        checked against the record's sha256 either way."""
        cached = safe_join(self.layout.cache_dir, record.wheel_sha256, record.filename)
        with cache.using(cached):  # never evicted while the venv is built from it
            if cached.is_file() and _sha256(cached) == record.wheel_sha256:
                size = cached.stat().st_size
                yield FetchedWheel(path=cached, sha256=record.wheel_sha256, size=size)
                return
            yield self._download(record, cached)

    def _download(self, record: PackageRecord, cached: Path) -> FetchedWheel:
        """Copy the record's wheel from the store into the cache, refusing other bytes."""
        self.layout.ensure_roots()
        with scratch_dir(self.layout.tmp_dir) as scratch:
            got = self.store.get_wheel(record.wheel_sha256, record.filename, scratch / "wheel")
            if got is None or got.sha256 != record.wheel_sha256:
                seen = "missing" if got is None else f"sha256 {got.sha256}"
                self.integrity_failures[record.filename] = (
                    f"expected sha256 {record.wheel_sha256}, got {seen}"
                )
                log.error(
                    "refusing the stored wheel %s of %s %s: expected sha256 %s, got %s",
                    record.filename, record.name, record.version, record.wheel_sha256, seen,
                )  # fmt: skip
                raise HostError(
                    f"the stored wheel {record.filename} does not match its record ({seen})",
                    code=STORED_WHEEL_CORRUPT,
                    http_status=502,
                    data={"filename": record.filename, "expected_sha256": record.wheel_sha256},
                )
            self.integrity_failures.pop(record.filename, None)
            cached.parent.mkdir(parents=True, exist_ok=True)
            got.path.replace(cached)
        return FetchedWheel(path=cached, sha256=record.wheel_sha256, size=got.size)

    # ---- helpers -----------------------------------------------------------------------

    def _here(self, record: PackageRecord) -> PackageRecord:
        """The store's record with this node's venv path (the installer's is elsewhere)."""
        link = str(self.layout.venv_link(record.dir_name, record.version_dir))
        return (
            record if record.venv_path == link else msgspec.structs.replace(record, venv_path=link)
        )

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        if self._load_on_demand:
            self.load()
            return
        raise StorageUnavailable(
            "the packages store has not been read since this node started; retrying",
            data={"store": self.store.identity, "retry_after_s": RETRY_AFTER_S},
        )

    def _scan_local(self, view: dict[Key, PackageRecord]) -> dict[Key, str]:
        """This node's records whose build is the store's: materialised already."""
        found: dict[Key, str] = {}
        root = self.layout.extensions_dir
        for dir_name in package_dirs(root):
            for (d, version_dir), record in view.items():
                if d != dir_name:
                    continue
                with contextlib.suppress(RecordUnreadable, OSError):
                    local = read_record(self.layout.record_path(dir_name, version_dir))
                    if local is not None and local.build == record.build:
                        found[(d, version_dir)] = record.build
        return found


def _equal(version_dir: str, version: Version) -> bool:
    try:
        return Version(version_dir) == version
    except InvalidVersion:
        return False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
