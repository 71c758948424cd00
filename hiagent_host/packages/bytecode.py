"""Seed a new venv's bytecode cache from a sibling venv that holds the very same source files.

uv installs by hard-linking files from its cache, so the pydantic of every plugin venv is the
same inode on disk, yet each new venv compiles it again on its first import (the probe):
about a quarter of a second. A `.pyc` records its source's mtime and size, and the loader
rewrites the code's file names to the importing path, so a `.pyc` whose source is the same
inode is exactly what the interpreter would write. Only those are linked over; anything else
(a copied install, another version, another interpreter) is left for Python to compile.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def site_packages(venv: Path) -> list[Path]:
    return sorted(venv.glob("lib/python*/site-packages"))


def seed_bytecode(donor: Path, venv: Path) -> int:
    """Hard-link `donor`'s `.pyc` files into `venv` where the sources are shared; how many."""
    linked = 0
    for donor_site in site_packages(donor):
        target_site = venv / donor_site.relative_to(donor)
        if target_site.is_dir():
            try:
                linked += _seed_site(donor_site, target_site)
            except OSError:  # the donor is being removed: what is linked stays valid
                break
    return linked


def _seed_site(donor_site: Path, target_site: Path) -> int:
    linked = 0
    for cache in donor_site.rglob("__pycache__"):
        package = cache.parent.relative_to(donor_site)
        for pyc in _entries(cache):
            module = pyc.name.partition(".")[0]
            source = f"{module}.py"
            if not _same_file(cache.parent / source, target_site / package / source):
                continue
            target_cache = target_site / package / "__pycache__"
            with contextlib.suppress(OSError):  # raced, another file system: Python compiles
                target_cache.mkdir(exist_ok=True)
                os.link(pyc, target_cache / pyc.name)
                linked += 1
    return linked


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samestat(a.lstat(), b.lstat())
    except OSError:
        return False


def _entries(directory: Path) -> list[Path]:
    try:
        return [p for p in directory.iterdir() if p.suffix == ".pyc"]
    except OSError:
        return []
