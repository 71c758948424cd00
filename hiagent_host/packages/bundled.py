"""The wheels the host puts into every plugin venv: its own shim and its plugin SDK."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Final

import hiagent_shim
from hiagent_host.packages.wheelbuild import build_wheel, read_project

SHIM_DIST: Final = "hiagent-shim"
SDK_DIST: Final = "hiagent-plugin-sdk"


def default_sdk_path() -> Path:
    """`sdk/` of the checkout the host runs from."""
    return Path(hiagent_shim.__file__).resolve().parent.parent / "sdk"


def build_shim_wheel(out_dir: Path) -> Path:
    """Zip the running host's `hiagent_shim` package into a wheel in `out_dir`."""
    src = Path(hiagent_shim.__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="hiagent-shim-build-") as tmp:
        root = Path(tmp)
        shutil.copytree(src, root / "hiagent_shim", ignore=shutil.ignore_patterns("__pycache__"))
        (root / "pyproject.toml").write_text(
            "[project]\n"
            f'name = "{SHIM_DIST}"\n'
            f'version = "{hiagent_shim.__version__}"\n'
            'description = "hiagent-host process shim (stdlib only)"\n'
            'requires-python = ">=3.9"\n',
            encoding="utf-8",
        )
        return build_wheel(root, out_dir)


def build_sdk_wheel(out_dir: Path, sdk_path: Path | None = None) -> Path:
    """Zip the plugin SDK from `sdk_path` (default: the checkout's `sdk/`) into a wheel."""
    root = sdk_path or default_sdk_path()
    read_project(root)  # fail early, with the builder's message, on a broken sdk/
    return build_wheel(root, out_dir)
