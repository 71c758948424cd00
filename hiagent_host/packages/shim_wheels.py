"""The wheels the host puts into every plugin venv: its own shim and its plugin SDK.

They are built once per source state into `state/wheelhouse/<key>/`, where `key` hashes the
shim's and the SDK's sources, and reused by every install until a source changes. A key
directory appears by an atomic rename, so it is complete whenever it exists.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import hiagent_shim
from hiagent_host.config import Config
from hiagent_host.packages.errors import InstallFailed
from hiagent_host.packages.wheelbuild import (
    WheelBuildError,
    build_wheel,
    read_project,
    source_digest,
)
from hiagent_host.storage import FileLock

SHIM_DIST: Final = "hiagent-shim"
SDK_DIST: Final = "hiagent-plugin-sdk"
# The SDK extra carrying the S3 client: venvs get it only while plugin storage needs it.
S3_EXTRA: Final = "s3"
# Building both wheels takes well under a second; a lock held longer belongs to a stuck peer.
WHEELHOUSE_LOCK_TIMEOUT_S: Final = 60.0
_KEY_CHARS: Final = 16


@dataclass(frozen=True)
class BundledWheels:
    """The shim and SDK wheels for the running host's sources."""

    shim: Path
    sdk: Path
    sdk_extras: tuple[str, ...] = ()  # e.g. ("s3",) when plugin storage is an object store

    @property
    def sdk_requirement(self) -> str:
        """The SDK wheel as the installer is given it, with its extras (`…whl[s3]`)."""
        extras = f"[{','.join(self.sdk_extras)}]" if self.sdk_extras else ""
        return f"{self.sdk}{extras}"


def sdk_extras(config: Config) -> tuple[str, ...]:
    """The SDK extras new venvs get: `s3` while `[plugin_storage]` is an object store."""
    return (S3_EXTRA,) if config.plugin_storage.object_store else ()


def default_sdk_path() -> Path:
    """`sdk/` of the checkout the host runs from."""
    return Path(hiagent_shim.__file__).resolve().parent.parent / "sdk"


def shim_source_dir() -> Path:
    return Path(hiagent_shim.__file__).resolve().parent


def build_shim_wheel(out_dir: Path) -> Path:
    """Zip the running host's `hiagent_shim` package into a wheel in `out_dir`."""
    src = shim_source_dir()
    with tempfile.TemporaryDirectory(prefix="hiagent-shim-build-") as tmp:
        root = Path(tmp)
        shutil.copytree(src, root / "hiagent_shim", ignore=shutil.ignore_patterns("__pycache__"))
        (root / "pyproject.toml").write_text(
            "[project]\n"
            f'name = "{SHIM_DIST}"\n'
            f'version = "{hiagent_shim.__version__}"\n'
            'description = "hiagent-host process shim (stdlib only)"\n'
            'requires-python = ">=3.10"\n',
            encoding="utf-8",
        )
        return build_wheel(root, out_dir)


def build_sdk_wheel(out_dir: Path, sdk_path: Path | None = None) -> Path:
    """Zip the plugin SDK from `sdk_path` (default: the checkout's `sdk/`) into a wheel."""
    root = sdk_path or default_sdk_path()
    read_project(root)  # fail early, with the builder's message, on a broken sdk/
    return build_wheel(root, out_dir)


def sources_key(sdk_path: Path | None = None) -> str:
    """A hash of the shim's and the SDK's sources: the wheelhouse directory name."""
    h = hashlib.sha256(hiagent_shim.__version__.encode())
    src = shim_source_dir()
    for path in sorted(src.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            h.update(f"\0{path.relative_to(src).as_posix()}\0".encode())
            h.update(path.read_bytes())
    h.update(source_digest(sdk_path or default_sdk_path()).encode())
    return h.hexdigest()[:_KEY_CHARS]


def ensure_bundled_wheels(
    wheelhouse: Path, sdk_path: Path | None = None, sdk_extras: tuple[str, ...] = ()
) -> BundledWheels:
    """The shim and SDK wheels for the current sources, building them on first use."""
    try:
        key = sources_key(sdk_path)
    except WheelBuildError as exc:
        raise InstallFailed(
            f"cannot read the SDK sources: {exc.message}", data={"reason": exc.message}
        ) from exc
    target = wheelhouse / key
    if not target.is_dir():
        wheelhouse.mkdir(parents=True, exist_ok=True)
        lock = FileLock(wheelhouse / ".lock")
        if not lock.acquire(timeout_s=WHEELHOUSE_LOCK_TIMEOUT_S):
            raise InstallFailed(f"{wheelhouse} stayed locked for {WHEELHOUSE_LOCK_TIMEOUT_S} s")
        try:
            if not target.is_dir():
                _build_into(target, sdk_path)
        except WheelBuildError as exc:  # the host's own sources are broken, not the plugin
            raise InstallFailed(
                f"cannot build the shim and SDK wheels: {exc.message}", data={"reason": exc.message}
            ) from exc
        finally:
            lock.release()
    shim, sdk = _one(target, SHIM_DIST), _one(target, SDK_DIST)
    return BundledWheels(shim=shim, sdk=sdk, sdk_extras=sdk_extras)


def _build_into(target: Path, sdk_path: Path | None) -> None:
    scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        build_shim_wheel(scratch)
        build_sdk_wheel(scratch, sdk_path)
        scratch.replace(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _one(directory: Path, dist: str) -> Path:
    prefix = dist.replace("-", "_") + "-"
    return next(p for p in sorted(directory.glob("*.whl")) if p.name.startswith(prefix))
