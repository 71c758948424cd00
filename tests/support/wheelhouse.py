"""A per-machine cache of the third-party wheels plugin venvs need, fetched once.

Everything after the first fetch installs with `--no-index --find-links <wheelhouse>`.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Final

from hiagent_host.storage import FileLock

# What plugin venvs in the tests need from a package index: the SDK's dependencies and the
# dependencies of the fixture plugins. Changing this list fetches a new wheelhouse once.
REQUIREMENTS: Final = (
    "pydantic>=2,<3",
    "PyYAML>=6",
    "pytz",
    "six",
    "boto3",  # the SDK's s3 extra, in venvs built while plugin storage is an object store
)
# The fetch talks to a package index: bounded, but generous for a slow first run.
FETCH_TIMEOUT_S: Final = 600


def cache_root() -> Path:
    return Path.home() / ".cache" / "hiagent-host-tests"


def ensure_wheelhouse() -> Path:
    """The wheelhouse for `REQUIREMENTS`, downloading it on first use on this machine."""
    key = hashlib.sha256("\n".join(REQUIREMENTS).encode()).hexdigest()[:12]
    target = cache_root() / f"wheelhouse-{key}"
    done = target / ".complete"
    if done.exists():
        return target
    with FileLock(cache_root() / f"wheelhouse-{key}.lock"):
        if done.exists():
            return target
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--only-binary=:all:",
                "--dest",
                str(target),
                *REQUIREMENTS,
            ],
            check=True,
            timeout=FETCH_TIMEOUT_S,
        )
        done.write_text("\n".join(REQUIREMENTS) + "\n")
    return target
