"""Seed a new venv's bytecode cache from a sibling venv that holds the very same source files.

uv installs by hard-linking files from its cache, so the pydantic of every plugin venv is the
same inode on disk, yet each new venv compiles it again on its first import (the probe):
about a quarter of a second. A `.pyc` records its source's mtime and size, and the loader
rewrites the code's file names to the importing path, so a `.pyc` whose source is the same
inode is exactly what the interpreter would write. Only those are linked over; anything else
(a copied install, another version, another interpreter) is left for Python to compile.

In a sandbox nothing is left for Python to compile: the venv is read-only to the plugin
processes and to the probe, so `compile_bytecode` writes what is missing after the install,
with the venv's own interpreter in isolated mode (`-I -S`: no `.pth` file or other plugin code
runs outside the sandbox; `compileall` only compiles).
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from hiagent_host.packages.runner import run
from hiagent_host.packages.venv import venv_python

# The environment of the compiler: nothing of the host's.
COMPILE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}


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


def compile_bytecode(venv: Path, *, timeout_s: float, cancel: threading.Event) -> bool:
    """Write the bytecode of every source in the venv's site-packages that has none; whether
    `compileall` succeeded (it may not: a dependency may ship sources it cannot compile, which
    are then compiled, or not, at import as ever)."""
    sites = site_packages(venv)
    if not sites:
        return False
    argv: list[str | os.PathLike[str]] = [venv_python(venv), "-I", "-S", "-m", "compileall", "-q"]
    argv += sites
    done = run(argv, env=COMPILE_ENV, cwd=venv, timeout_s=timeout_s, cancel=cancel)
    return done.ok


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
