"""Historic offline bundles: a plugin wheel carrying its dependencies as `dependencies/*.whl`.

The bundled wheels are extracted into a scratch directory that becomes the install's only
find-links source, and the plugin wheel is rewritten without the `dependencies/` folder (and
its RECORD lines), so the venv's site-packages does not receive a second copy of every wheel.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from hiagent_host.packages.wheel import BUNDLE_DIR
from hiagent_host.storage import safe_join


def extract_bundle(wheel: Path, members: list[str], dest: Path) -> Path:
    """Copy the bundled wheels `members` of `wheel` into `dest/dependencies/`; return that."""
    out = dest / "dependencies"
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        for member in members:
            target = safe_join(out, member[len(BUNDLE_DIR) :])
            with zf.open(member) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
    return out


def strip_bundle(wheel: Path, dest: Path) -> Path:
    """A copy of `wheel` in `dest` (same file name) without its `dependencies/` folder."""
    dest.mkdir(parents=True, exist_ok=True)
    target = safe_join(dest, wheel.name)
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(target, "w") as out:
        for info in src.infolist():
            if info.filename.startswith(BUNDLE_DIR):
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode("utf-8").splitlines(keepends=True)
                data = "".join(ln for ln in lines if not ln.startswith(BUNDLE_DIR)).encode()
            out.writestr(info, data, compress_type=info.compress_type)
    return target
