"""Package names, versions and wheel file names: parsing, normalising, and directory names.

Directory names are the wheel's escaped distribution name (`hiagent_plugin_time`) and the
PEP 440 normal form of the version (`str(Version(v))`); every lookup goes through here, so
any PEP 503 spelling of a name and any PEP 440-equal version find the same package.
"""

from __future__ import annotations

import re
from typing import Final

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from hiagent_host.packages.errors import InvalidRequest

# PEP 508 distribution names: letters, digits, and inner `.`, `_`, `-`.
_NAME_RE: Final = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
MAX_NAME_CHARS: Final = 200


def check_name(name: str) -> str:
    """`name` if it is a valid distribution name, else InvalidRequest."""
    if len(name) > MAX_NAME_CHARS or not _NAME_RE.match(name):
        raise InvalidRequest(f"not a valid package name: {name!r}", data={"name": name})
    return name


def dir_name(name: str) -> str:
    """The directory name of a package: its PEP 503 name with `-` escaped to `_`."""
    return canonicalize_name(check_name(name)).replace("-", "_")


def parse_version(version: str) -> Version:
    """A PEP 440 version, or InvalidRequest."""
    try:
        return Version(version)
    except InvalidVersion:
        raise InvalidRequest(
            f"not a valid PEP 440 version: {version!r}", data={"version": version}
        ) from None


def version_dir(version: str | Version) -> str:
    """The directory name of a version: its PEP 440 normal form."""
    return str(version if isinstance(version, Version) else parse_version(version))


def is_version_dir(entry: str) -> bool:
    """Whether a directory entry names a version (and is not one of our hidden leftovers)."""
    if entry.startswith("."):
        return False
    try:
        Version(entry)
    except InvalidVersion:
        return False
    return True


def parse_filename(filename: str) -> tuple[str, Version]:
    """The (PEP 503 name, version) a wheel file name declares, or InvalidRequest."""
    if not filename or "/" in filename or "\\" in filename or "\x00" in filename:
        raise InvalidRequest(
            f"filename must be a bare wheel file name: {filename!r}", data={"filename": filename}
        )
    try:
        name, version, _build, _tags = parse_wheel_filename(filename)
    except (InvalidWheelFilename, InvalidVersion) as exc:
        raise InvalidRequest(
            f"not a valid wheel file name: {filename!r}: {exc}", data={"filename": filename}
        ) from exc
    return str(name), version
