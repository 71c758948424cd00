"""The install record `extensions/<dir>/<version>/package.json`, and the events around it.

The record is the commit point of an install: a venv is current exactly when a record names
its build directory. It is written atomically and carries a schema version; a record of
another schema, or one that no longer decodes, is `RecordUnreadable`: listings skip it with a
log line and recovery leaves its package alone rather than guess.
"""

from __future__ import annotations

import datetime as dt
import enum
from pathlib import Path
from typing import Any, Final

import msgspec

from hiagent_host.packages.venv import Dependency
from hiagent_host.storage import atomic_write_bytes

SCHEMA_VERSION: Final = 1


class PackageRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One installed package version (the content of its package.json)."""

    schema_version: int = SCHEMA_VERSION
    name: str  # as METADATA spells it
    version: str  # as METADATA spells it
    dir_name: str  # escaped PEP 503 name: extensions/<dir_name>/, venvs/<dir_name>/
    version_dir: str  # PEP 440 normal form: the <version> directory name
    build: str  # the real venv: venvs/<dir_name>/<build>/ (venv_path links to it)
    wheel_sha256: str
    wheel_size: int
    uri: str
    filename: str
    installed_at: str  # RFC 3339, UTC
    plugins: list[str]  # entry-point names, in entry_points.txt order
    metadata: dict[str, Any]  # plugin name → Metadata, as the probe described it
    dependencies: list[Dependency]  # everything installed in the venv, resolved versions
    venv_path: str  # venvs/<dir_name>/<version_dir>: stable, for operators and `activate`
    disk_size_bytes: int
    python_version: str
    installer: str  # "uv" | "pip"
    offline_bundle: bool = False

    def brief(self) -> dict[str, Any]:
        """The API's PackageMetaBrief."""
        return {
            "name": self.name,
            "version": self.version,
            "uri": self.uri,
            "filename": self.filename,
        }

    def meta(self) -> dict[str, Any]:
        """The API's PackageMeta: the brief plus one Metadata per plugin."""
        return self.brief() | {"plugins": [self.metadata[p] for p in self.plugins]}

    def brief_with_entry(self) -> dict[str, Any]:
        """The API's PackageMetaBriefWithEntry."""
        return self.brief() | {"plugins": list(self.plugins)}


class EventKind(enum.StrEnum):
    INSTALLED = "installed"
    REPLACED = "replaced"
    DELETED = "deleted"


class PackageEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A package version became current, was replaced by a new build, or was deleted."""

    kind: EventKind
    name: str
    version: str
    record: PackageRecord | None = None  # the new record (None for deletions)


_decoder = msgspec.json.Decoder(PackageRecord)
_encoder = msgspec.json.Encoder()


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def encode_record(record: PackageRecord) -> bytes:
    return msgspec.json.format(_encoder.encode(record), indent=2) + b"\n"


def decode_record(data: bytes, where: str) -> PackageRecord:
    """A record from its bytes; RecordUnreadable (naming `where`) if they are unusable."""
    try:
        record = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise RecordUnreadable(f"{where}: {exc}") from exc
    if record.schema_version != SCHEMA_VERSION:
        raise RecordUnreadable(f"{where}: schema version {record.schema_version}")
    return record


def write_record(path: Path, record: PackageRecord) -> None:
    """Atomically replace `path` with `record`."""
    atomic_write_bytes(path, encode_record(record))


class RecordUnreadable(Exception):
    """A package.json exists but cannot be used (I/O error, bad JSON, other schema)."""


def read_record(path: Path) -> PackageRecord | None:
    """The record at `path`, or None if there is none; RecordUnreadable if it is unusable."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise RecordUnreadable(f"{path}: {exc}") from exc
    return decode_record(data, str(path))
