"""Read and validate a plugin wheel before anything is installed: every problem, raised once.

A wheel passes when it is a zip archive whose members stay inside it (no `..`, no absolute
paths, no symlinks, no duplicates) and unpack to less than the configured cap; it has exactly
one `.dist-info` directory with METADATA (Name, Version), WHEEL and RECORD; its file name
agrees with METADATA; it declares at least one `hiagent.plugins` entry point; and every
member RECORD lists with a hash has that hash and size (RECORD is parsed and checked with
`installer`'s `records` module). Members RECORD does not list are allowed: a historic offline
bundle carries a top-level `dependencies/` folder of wheels added after the wheel was built,
which `offline_bundle.py` turns into a find-links source. Member paths are checked here, before any
installer sees the wheel, since `installer` checks them only as it writes.
"""

from __future__ import annotations

import stat
import zipfile
import zlib
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from typing import Any, Final

import msgspec
from installer.records import InvalidRecordEntry, RecordEntry, parse_record_file
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from hiagent_host.packages.errors import InvalidPackage
from hiagent_host.packages.names import parse_filename

PLUGIN_GROUP: Final = "hiagent.plugins"
BUNDLE_DIR: Final = "dependencies/"
# Hashes RECORD may use; md5 and sha1 are too weak to vouch for anything.
RECORD_HASHES: Final = frozenset({"sha224", "sha256", "sha384", "sha512", "blake2b", "blake2s"})


class WheelSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What `read_metadata` reports about a wheel: PackageMetaBriefWithEntry and more."""

    name: str
    version: str
    uri: str
    filename: str
    plugins: list[str]
    sha256: str
    size: int
    requires_dist: list[str]
    bundled_wheels: list[str]

    def brief_with_entry(self) -> dict[str, Any]:
        """The API's PackageMetaBriefWithEntry."""
        return {
            "name": self.name,
            "version": self.version,
            "uri": self.uri,
            "filename": self.filename,
            "plugins": list(self.plugins),
        }


@dataclass(frozen=True)
class WheelContents:
    """The facts of a valid wheel that the installer needs."""

    name: str
    version: str
    plugins: list[str]
    requires_dist: list[str]
    bundled_wheels: list[str]  # member names under dependencies/


def inspect_wheel(path: Path, filename: str, *, max_unpacked_bytes: int) -> WheelContents:
    """Validate the wheel at `path` (named `filename` by the caller); InvalidPackage if bad."""
    file_name, file_version = parse_filename(filename)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as exc:
        raise InvalidPackage(
            f"{filename} is not a valid wheel: not a zip archive",
            data={"problems": [f"not a zip archive: {exc}"]},
        ) from exc
    with zf:
        return _Checker(zf, filename, file_name, file_version, max_unpacked_bytes).run()


class _Checker:
    """One pass over an open wheel, noting problems instead of stopping at the first."""

    def __init__(
        self,
        zf: zipfile.ZipFile,
        filename: str,
        file_name: str,
        file_version: Version,
        max_unpacked_bytes: int,
    ) -> None:
        self.zf = zf
        self.filename = filename
        self.file_name = file_name
        self.file_version = file_version
        self.max_unpacked_bytes = max_unpacked_bytes
        self.problems: list[str] = []
        self.members: dict[str, zipfile.ZipInfo] = {}

    def run(self) -> WheelContents:
        unpacked_ok = self._check_members()
        dist_info = self._dist_info()
        name = version = ""
        plugins: list[str] = []
        requires: list[str] = []
        if dist_info:
            name, version, requires = self._check_metadata(dist_info)
            plugins = self._check_entry_points(dist_info)
            if f"{dist_info}/WHEEL" not in self.members:
                self.problems.append(f"{dist_info}/WHEEL is missing")
            self._check_record(dist_info, verify_hashes=unpacked_ok)
        bundled = self._bundled_wheels()
        if self.problems:
            raise InvalidPackage(
                f"{self.filename} is not a valid plugin wheel: {len(self.problems)} problem(s): "
                + "; ".join(self.problems),
                data={"problems": self.problems},
            )
        return WheelContents(name, version, plugins, requires, bundled)

    def _check_members(self) -> bool:
        """Member names and types; whether the total unpacked size is under the cap."""
        total = 0
        for info in self.zf.infolist():
            name = info.filename
            total += info.file_size
            parts = name.replace("\\", "/").split("/")
            if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
                self.problems.append(f"member {name!r} has an absolute path")
            elif ".." in parts:
                self.problems.append(f"member {name!r} escapes the archive (`..`)")
            elif "\x00" in name:
                self.problems.append(f"member {name!r} has a NUL byte in its name")
            if stat.S_ISLNK(info.external_attr >> 16):
                self.problems.append(f"member {name!r} is a symbolic link")
            if name in self.members:
                self.problems.append(f"member {name!r} appears more than once")
            self.members[name] = info
        if total > self.max_unpacked_bytes:
            self.problems.append(
                f"members unpack to {total} bytes, more than the cap of {self.max_unpacked_bytes}"
            )
            return False
        return True

    def _dist_info(self) -> str | None:
        tops = {n.split("/", 1)[0] for n in self.members if "/" in n}
        found = sorted(t for t in tops if t.endswith(".dist-info"))
        if not found:
            self.problems.append("no .dist-info directory (METADATA is missing)")
            return None
        if len(found) > 1:
            self.problems.append(f"more than one .dist-info directory: {', '.join(found)}")
            return None
        return found[0]

    def _text(self, member: str) -> str | None:
        if member not in self.members:
            return None
        try:
            return self.zf.read(member).decode("utf-8")
        except (zipfile.BadZipFile, zlib.error, NotImplementedError, UnicodeDecodeError) as exc:
            self.problems.append(f"{member} cannot be read: {exc}")
            return None

    def _check_metadata(self, dist_info: str) -> tuple[str, str, list[str]]:
        text = self._text(f"{dist_info}/METADATA")
        if text is None:
            self.problems.append(f"{dist_info}/METADATA is missing")
            return "", "", []
        headers = HeaderParser().parsestr(text)
        name = (headers.get("Name") or "").strip()
        version = (headers.get("Version") or "").strip()
        if not name:
            self.problems.append("METADATA has no Name")
        elif canonicalize_name(name) != self.file_name:
            self.problems.append(f"file name says {self.file_name!r} but METADATA Name is {name!r}")
        if not version:
            self.problems.append("METADATA has no Version")
        else:
            try:
                if Version(version) != self.file_version:
                    self.problems.append(
                        f"file name says version {self.file_version} "
                        f"but METADATA Version is {version!r}"
                    )
            except ValueError:  # InvalidVersion, or an int of too many digits
                shown = version[:80]
                self.problems.append(f"METADATA Version {shown!r} is not a PEP 440 version")
        owner = dist_info.removesuffix(".dist-info").rpartition("-")[0]
        if name and canonicalize_name(owner) != canonicalize_name(name):
            self.problems.append(f"{dist_info} does not belong to {name!r}")
        return name, version, [str(r) for r in headers.get_all("Requires-Dist") or []]

    def _check_entry_points(self, dist_info: str) -> list[str]:
        text = self._text(f"{dist_info}/entry_points.txt")
        plugins = parse_entry_points(text or "").get(PLUGIN_GROUP, [])
        if not plugins:
            self.problems.append(f"no entry point in group [{PLUGIN_GROUP}]")
        names = [n for n, _ in plugins]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            self.problems.append(f"entry point names appear more than once: {', '.join(dupes)}")
        return list(dict.fromkeys(names))

    def _check_record(self, dist_info: str, *, verify_hashes: bool) -> None:
        """RECORD's rows, parsed and checked by `installer`: every member listed with a hash
        (of a strong algorithm) is in the wheel and has that hash and size."""
        record_name = f"{dist_info}/RECORD"
        text = self._text(record_name)
        if text is None:
            self.problems.append(f"{record_name} is missing")
            return
        try:
            rows = list(parse_record_file(text.splitlines()))
        except InvalidRecordEntry as exc:
            self.problems.append(f"{record_name} cannot be parsed: {exc}")
            return
        for row in rows:
            try:
                entry = RecordEntry.from_elements(*row)
            except InvalidRecordEntry as exc:
                self.problems.append(f"RECORD entry for {row[0]!r} is invalid: {exc}")
                continue
            if entry.hash_ is None:
                continue  # RECORD itself, and anything listed without a hash
            if entry.hash_.name not in RECORD_HASHES:
                self.problems.append(
                    f"RECORD entry for {entry.path!r} has an unusable hash {entry.hash_}"
                )
            elif entry.path not in self.members:
                self.problems.append(f"RECORD lists {entry.path!r}, which is not in the wheel")
            elif verify_hashes and not self._matches(entry):
                self.problems.append(f"{entry.path!r} does not match its RECORD hash and size")

    def _matches(self, entry: RecordEntry) -> bool:
        """Whether the member has the hash and size its RECORD entry says (False if unreadable)."""
        try:
            with self.zf.open(entry.path) as stream:
                return entry.validate_stream(stream)  # type: ignore[arg-type]
        except (zipfile.BadZipFile, zlib.error, NotImplementedError, OSError) as exc:
            self.problems.append(f"{entry.path!r} cannot be read: {exc}")
            return True  # reported as unreadable, not as a mismatch

    def _bundled_wheels(self) -> list[str]:
        bundled = []
        for name in self.members:
            if not name.startswith(BUNDLE_DIR) or name.endswith("/"):
                continue
            rest = name[len(BUNDLE_DIR) :]
            if "/" in rest or not rest.endswith(".whl"):
                continue
            try:
                parse_wheel_filename(rest)
            except (InvalidWheelFilename, ValueError):  # ValueError: InvalidVersion, huge ints
                self.problems.append(f"bundled {name!r} is not a valid wheel file name")
                continue
            bundled.append(name)
        return sorted(bundled)


def parse_entry_points(text: str) -> dict[str, list[tuple[str, str]]]:
    """entry_points.txt as {group: [(name, value), …]}, names exactly as written."""
    groups: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = groups.setdefault(line[1:-1].strip(), [])
        elif current is not None and "=" in line:
            name, _, value = line.partition("=")
            current.append((name.strip(), value.strip()))
    return groups
