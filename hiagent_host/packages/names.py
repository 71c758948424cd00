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
# Longer versions are refused before parsing (no real version comes close; a 5,000-digit one
# would overflow int conversion). Wheel file names are file names: at most 255 bytes.
MAX_VERSION_CHARS: Final = 128
MAX_FILENAME_CHARS: Final = 255
# An offending value is quoted in errors up to this many characters.
MAX_SHOWN_CHARS: Final = 80


def shown(value: str) -> str:
    """`value` for an error message: cut to `MAX_SHOWN_CHARS` characters."""
    return value if len(value) <= MAX_SHOWN_CHARS else value[:MAX_SHOWN_CHARS] + "…"


def check_name(name: str) -> str:
    """`name` if it is a valid distribution name, else InvalidRequest."""
    if len(name) > MAX_NAME_CHARS or not _NAME_RE.match(name):
        raise InvalidRequest(
            f"not a valid package name: {shown(name)!r}", data={"name": shown(name)}
        )
    return name


def dir_name(name: str) -> str:
    """The directory name of a package: its PEP 503 name with `-` escaped to `_`."""
    return canonicalize_name(check_name(name)).replace("-", "_")


def parse_version(version: str) -> Version:
    """A PEP 440 version, or InvalidRequest."""
    try:
        if len(version) > MAX_VERSION_CHARS:
            raise InvalidVersion(f"longer than {MAX_VERSION_CHARS} characters")
        return Version(version)
    except ValueError:  # InvalidVersion, or an int of too many digits
        raise InvalidRequest(
            f"not a valid PEP 440 version: {shown(version)!r}", data={"version": shown(version)}
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
    except ValueError:  # InvalidVersion, or an int of too many digits
        return False
    return True


def parse_filename(filename: str) -> tuple[str, Version]:
    """The (PEP 503 name, version) a wheel file name declares, or InvalidRequest."""
    bad = not filename or len(filename) > MAX_FILENAME_CHARS
    if bad or "/" in filename or "\\" in filename or "\x00" in filename:
        raise InvalidRequest(
            f"filename must be a bare wheel file name of at most {MAX_FILENAME_CHARS} "
            f"characters: {shown(filename)!r}",
            data={"filename": shown(filename)},
        )
    try:
        name, version, _build, _tags = parse_wheel_filename(filename)
    except (InvalidWheelFilename, ValueError) as exc:  # ValueError: InvalidVersion, huge ints
        raise InvalidRequest(
            f"not a valid wheel file name: {shown(filename)!r}: {shown(str(exc))}",
            data={"filename": shown(filename)},
        ) from exc
    return str(name), version
