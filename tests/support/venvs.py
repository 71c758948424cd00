"""Plain plugin venvs for tests that exercise the shim without the package manager."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Final

from uv import find_uv_bin

# Creating a venv and installing a handful of cached wheels takes about a second.
VENV_TIMEOUT_S: Final = 300


def make_plugin_venv(dest: Path, wheels: list[Path], wheelhouse: Path) -> Path:
    """Create a venv at `dest` with `wheels` installed offline; return its python."""
    uv = find_uv_bin()
    subprocess.run(
        [uv, "venv", "--quiet", "--python", sys.executable, str(dest)],
        check=True,
        timeout=VENV_TIMEOUT_S,
    )
    python = dest / "bin" / "python"
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(python),
            "--no-index",
            "--find-links",
            str(wheelhouse),
            *map(str, wheels),
        ],
        check=True,
        timeout=VENV_TIMEOUT_S,
    )
    return python
