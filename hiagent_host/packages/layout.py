"""Where the package manager keeps things on disk: every path it writes is built here.

    extensions/<dir>/<version>/package.json     the record (the commit point of an install)
    venvs/<dir>/.<version>-<build>/              a real virtualenv, never moved once built
    venvs/<dir>/<version> -> .<version>-<build>  the operator's stable name for the current one
    state/cache/wheels/<sha256>/<filename>       fetched wheels, content-addressed
    state/wheelhouse/<key>/                      the shim and SDK wheels, keyed by source hash
    state/locks/<dir>.lock                       one cross-process lock per package
    state/leases/<dir>/<build>.lease             held (shared) by every process running the build
    state/tmp/<pid>-*/                           one install's scratch space (probe data, bundles)
    state/data/<dir>/<version>/                  the plugin processes' writable data
    state/logs/<dir>/<version>.log               the plugin processes' stderr

Every component that comes from a caller or a wheel passes `safe_join`, so no name can reach
outside these roots, whatever `..`, absolute path or symlink it holds.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Final

from hiagent_host.config import Config
from hiagent_host.storage import safe_join

RECORD_FILE: Final = "package.json"
# A build directory name: `.<version>-<build id>`; PEP 440 normal forms never hold a `-`.
BUILD_PREFIX: Final = "."
BUILD_SEP: Final = "-"
# Prefix of whatever was renamed aside to be removed (a deleted record, an old build).
TRASH_PREFIX: Final = ".trash-"


def new_build_name(version_dir: str) -> str:
    """A fresh, unique build directory name for `version_dir`."""
    return f"{BUILD_PREFIX}{version_dir}{BUILD_SEP}{secrets.token_hex(4)}"


def trash_name() -> str:
    """A fresh name to rename something aside to before removing it."""
    return f"{TRASH_PREFIX}{secrets.token_hex(6)}"


def build_version(build: str) -> str | None:
    """The version directory a build directory name belongs to, or None if it is not one."""
    if not build.startswith(BUILD_PREFIX) or build.startswith(TRASH_PREFIX):
        return None
    version, sep, build_id = build[len(BUILD_PREFIX) :].rpartition(BUILD_SEP)
    return version if sep and version and build_id else None


class Layout:
    """The directories of one configuration."""

    def __init__(self, config: Config) -> None:
        self.extensions_dir = config.paths.extensions_dir
        self.venvs_dir = config.paths.venvs_dir
        self.state_dir = config.paths.state_dir

    # ---- roots -------------------------------------------------------------------------

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "cache" / "wheels"

    @property
    def wheelhouse_dir(self) -> Path:
        return self.state_dir / "wheelhouse"

    @property
    def locks_dir(self) -> Path:
        return self.state_dir / "locks"

    @property
    def leases_dir(self) -> Path:
        return self.state_dir / "leases"

    @property
    def tmp_dir(self) -> Path:
        return self.state_dir / "tmp"

    @property
    def data_root(self) -> Path:
        return self.state_dir / "data"

    @property
    def logs_root(self) -> Path:
        return self.state_dir / "logs"

    def ensure_roots(self) -> None:
        for root in (self.extensions_dir, self.venvs_dir, self.state_dir, self.tmp_dir):
            root.mkdir(parents=True, exist_ok=True)

    # ---- per package -------------------------------------------------------------------

    def records_of(self, dir_name: str) -> Path:
        return safe_join(self.extensions_dir, dir_name)

    def record_dir(self, dir_name: str, version_dir: str) -> Path:
        return safe_join(self.extensions_dir, dir_name, version_dir)

    def record_path(self, dir_name: str, version_dir: str) -> Path:
        return safe_join(self.extensions_dir, dir_name, version_dir, RECORD_FILE)

    def venvs_of(self, dir_name: str) -> Path:
        return safe_join(self.venvs_dir, dir_name)

    def venv_link(self, dir_name: str, version_dir: str) -> Path:
        """The stable path of the current venv (a symlink to its build directory)."""
        return self.venvs_of(dir_name) / version_dir

    def build_dir(self, dir_name: str, build: str) -> Path:
        return safe_join(self.venvs_dir, dir_name, build)

    def lock_path(self, dir_name: str) -> Path:
        return safe_join(self.locks_dir, f"{dir_name}.lock")

    def lease_path(self, dir_name: str, build: str) -> Path:
        return safe_join(self.leases_dir, dir_name, f"{build}.lease")

    def data_dir(self, dir_name: str, version_dir: str) -> Path:
        return safe_join(self.data_root, dir_name, version_dir)

    def log_path(self, dir_name: str, version_dir: str) -> Path:
        return safe_join(self.logs_root, dir_name, f"{version_dir}.log")


def package_dirs(root: Path) -> list[str]:
    """The package directory names under `root` (extensions/ or venvs/), hidden ones skipped."""
    try:
        return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    except FileNotFoundError:
        return []
