"""The base venv: the shim, the SDK and their dependencies, installed once, linked into each venv.

Every plugin venv holds the same shim, SDK and pydantic; installing and first importing them
is most of a warm install. So they are installed once per key (the interpreter, the shim and
SDK wheels, the sources, the installer) into `venvs/.base/<key>/`, their bytecode compiled
there by importing them. A new venv is made from the base (`clone`): the skeleton `uv venv`
and the installer wrote (`pyvenv.cfg`, `bin/` with the interpreter links, activate and
console scripts) is copied with the base's path and prompt replaced by the venv's own, and
site-packages receives hard links of the base's files (real directories, linked files). The
first venv of a base is made by `uv venv` instead and only gains what it lacks. The installer,
given the same requirements as ever, finds the shim and SDK satisfied and adds only the
plugin and what it needs beyond them.

A hard link shares a file, not a name: an installer that upgrades or removes a distribution
in one venv unlinks its files there and leaves the base and every other venv alone, exactly
as with uv's cache, which links its files into every venv. Editing a file in place edits it
everywhere (docs/operations.md says how to patch a venv).

The server builds the base in the background at start (`warm_base` in build.py), so the
first install on a fresh host finds it, or waits for it rather than build a second. A base is
built in `.building-<pid>-<random>/`, one build at a time (a build that outlasts
`BASE_LOCK_TIMEOUT_S` leaves a waiting install to build its own), and appears under its key by
an atomic rename, so it is complete whenever it exists. It is rebuilt when older than
`packages.base_venv_max_age_s`, so new releases of the SDK's dependencies reach new venvs, and
every other base is removed then.
Publishing, pruning and cloning hold one cross-process lock, so no clone ever reads a base
being removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec

from hiagent_host.packages.bytecode import site_packages
from hiagent_host.packages.errors import Cancelled, InstallFailed
from hiagent_host.packages.layout import TRASH_PREFIX, Layout
from hiagent_host.packages.recovery import pid_alive, remove_tree
from hiagent_host.packages.runner import run
from hiagent_host.packages.shim_wheels import BundledWheels
from hiagent_host.packages.venv import Dependency, Installer, Sources, VenvBuilder, venv_python
from hiagent_host.storage import FileLock, atomic_write_bytes

log = logging.getLogger(__name__)

BASE_DIR: Final = ".base"
MANIFEST: Final = "base.json"
BUILDING_PREFIX: Final = ".building-"
# Building a base is one warm install (well under a second); a lock held longer than this
# belongs to a peer installing from a slow index, and this install goes without a base.
BASE_LOCK_TIMEOUT_S: Final = 120.0
# An install waiting for another's base build looks at its cancel flag this often.
BUILD_WAIT_SLICE_S: Final = 0.2
# Importing what a plugin process imports first compiles its bytecode in the base.
WARM_IMPORTS: Final = "import hiagent_plugin_sdk, hiagent_shim.server, hiagent_shim.describe"
WARM_TIMEOUT_S: Final = 60.0
# The prompt a base is made with, replaced by each venv's own in the files `uv venv` writes.
BASE_PROMPT: Final = b"hiagent-base-prompt"
# Paths and prompts that every activate script and `#!` line spells the same, unquoted: a
# base is only used when both the venv's path and its prompt are made of these.
_SAFE_PATH: Final = re.compile(r"[A-Za-z0-9_./+@%,:=-]+")
_SAFE_PROMPT: Final = re.compile(r"[A-Za-z0-9_.+!-]+")
# Files whose mere presence changes what an interpreter does at start-up.
STARTUP_HOOKS: Final = ("sitecustomize.py", "usercustomize.py")


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    """What a base holds; `built_at` is the path its scripts name (it was built there).

    `skeleton` is everything but site-packages' contents, as `(path, kind, link target)`,
    kind "dir", "link" or "file" (a file is copied with the base's path and prompt replaced).
    `dirs` and `files` (with their inode numbers) list its site-packages, relative to the
    base, so that a clone neither walks nor stats it.
    """

    key: str
    created_at: float
    built_at: str
    distributions: list[Dependency]
    skeleton: list[tuple[str, str, str]]
    dirs: list[str]
    files: list[tuple[str, int]]


@dataclass(frozen=True)
class Base:
    path: Path
    manifest: Manifest


@dataclass
class Linked:
    """What `clone` put into a venv: the links, to tell later whether they are untouched."""

    venv: Path
    dev: int
    files: list[tuple[str, int]] = field(default_factory=list)  # (path, st_ino)
    startup_files: frozenset[str] = frozenset()

    def intact(self) -> bool:
        """No linked file was replaced or removed, and no start-up hook (`.pth`) was added."""
        for path, ino in self.files:
            try:
                st = os.lstat(path)
            except OSError:
                return False
            if st.st_ino != ino or st.st_dev != self.dev:
                return False
        return _startup_files(self.venv) == self.startup_files


def base_key(builder: VenvBuilder, bundled: BundledWheels, sources: Sources) -> str:
    """What the contents of a base depend on, hashed."""
    parts = {
        "python": os.path.realpath(builder.python),
        "installer": str(builder.installer),
        "shim": str(bundled.shim),  # their directory is keyed by the sources' hash
        "sdk": bundled.sdk_requirement,
        "sources": sources.args(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def wanted(builder: VenvBuilder, venv: Path, prompt: str, max_age_s: float) -> bool:
    """Whether this venv can come from a base: on, uv, and names that need no quoting."""
    return (
        max_age_s > 0
        and builder.installer is Installer.UV
        and _SAFE_PATH.fullmatch(str(venv)) is not None
        and _SAFE_PROMPT.fullmatch(prompt) is not None
    )


def prepare_base(
    layout: Layout,
    builder: VenvBuilder,
    bundled: BundledWheels,
    sources: Sources,
    *,
    max_age_s: float,
) -> None:
    """Build the base for this install unless a fresh one exists; without any lock held.

    A base the installer cannot build fails the install (the same shim and SDK are part of
    it); a file system refusing the base directory is logged and the install goes without.
    """
    key = base_key(builder, bundled, sources)
    if find_base(layout, key, max_age_s) is not None:
        return
    # One build at a time (the server's at start, an install's): the one that waited finds
    # the base built; a build taking longer than the wait leaves the waiter to build its own.
    building = FileLock(layout.locks_dir / f"{BASE_DIR}-build.lock")
    deadline = time.monotonic() + BASE_LOCK_TIMEOUT_S
    while not (held := building.acquire(timeout_s=BUILD_WAIT_SLICE_S)):
        if builder.cancel.is_set():
            raise Cancelled("install cancelled while waiting for the base venv")
        if time.monotonic() >= deadline:
            log.warning("a base venv build took over %s s; building another", BASE_LOCK_TIMEOUT_S)
            break
    try:
        if find_base(layout, key, max_age_s) is None:
            _build_base(layout, builder, bundled, sources, key, max_age_s)
    except OSError as exc:
        log.warning("cannot build the base venv (%s); installing without it", exc)
    finally:
        if held:
            building.release()


@contextlib.contextmanager
def locked_base(
    layout: Layout,
    builder: VenvBuilder,
    bundled: BundledWheels,
    sources: Sources,
    *,
    max_age_s: float,
) -> Iterator[Base | None]:
    """The fresh base for this install if there is one, locked (never pruned) for the block."""
    key = base_key(builder, bundled, sources)
    with _locked(layout) as held:
        yield find_base(layout, key, max_age_s) if held else None


@contextlib.contextmanager
def _locked(layout: Layout, timeout_s: float = BASE_LOCK_TIMEOUT_S) -> Iterator[bool]:
    lock = FileLock(layout.locks_dir / f"{BASE_DIR}.lock")
    if not lock.acquire(timeout_s=timeout_s):
        if timeout_s:
            log.warning("the base venv stayed locked for %s s; going without", timeout_s)
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def clean_base(layout: Layout) -> list[Path]:
    """Remove what interrupted base builds left behind (but not a build running now)."""
    removed: list[Path] = []
    with _locked(layout, timeout_s=0) as held:
        for entry in _entries(layout.venvs_dir / BASE_DIR) if held else ():
            stale = entry.name.startswith(TRASH_PREFIX) or _abandoned_build(entry)
            if stale and remove_tree(entry):
                removed.append(entry)
    return removed


def find_base(layout: Layout, key: str, max_age_s: float) -> Base | None:
    """The base for `key` if it exists and is younger than `max_age_s`."""
    path = layout.venvs_dir / BASE_DIR / key
    try:
        manifest = msgspec.json.decode((path / MANIFEST).read_bytes(), type=Manifest)
    except (OSError, msgspec.MsgspecError):
        return None
    if manifest.key != key or time.time() - manifest.created_at > max_age_s:
        return None
    return Base(path, manifest)


def clone(base: Base, venv: Path, prompt: str) -> Linked:
    """Make `venv` from the base: what it lacks of the skeleton, then site-packages' links.

    `venv` may be missing (it is then made entirely from the base, as `uv venv` would have
    made it) or fresh from `uv venv` (it then keeps its own files and gains the scripts).
    """
    manifest = base.manifest
    source, target = f"{base.path}/", f"{venv}/"
    replacements = (
        (manifest.built_at.encode(), str(venv).encode()),
        (BASE_PROMPT, prompt.encode()),
    )
    venv.mkdir(exist_ok=True)
    for relative, kind, link in manifest.skeleton:
        path = venv / relative
        if kind == "dir":
            path.mkdir(exist_ok=True)
        elif path.exists() or path.is_symlink():
            continue
        elif kind == "link":
            path.symlink_to(link)
        else:
            data = (base.path / relative).read_bytes()
            for old, new in replacements:
                data = data.replace(old, new)
            path.write_bytes(data)
            path.chmod((base.path / relative).stat().st_mode & 0o777)
    for directory in manifest.dirs:
        (venv / directory).mkdir(exist_ok=True)
    linked = Linked(venv, dev=base.path.stat().st_dev)
    for relative, ino in manifest.files:
        path_str = target + relative
        try:
            os.link(source + relative, path_str, follow_symlinks=False)
        except FileExistsError:
            continue  # made by the venv's creation: it keeps its own
        linked.files.append((path_str, ino))
    linked.startup_files = _startup_files(venv)
    return linked


def _listing(
    venv: Path,
) -> tuple[list[tuple[str, str, str]], list[str], list[tuple[str, int]]]:
    """The skeleton, and the directories and files (with inodes) of site-packages, relative."""
    sites = set(site_packages(venv))
    skeleton: list[tuple[str, str, str]] = []
    dirs: list[str] = []
    names: list[str] = []
    for dirpath, dirnames, filenames in os.walk(venv):
        here = Path(dirpath)
        inside = any(here == site or site in here.parents for site in sites)
        for name in [*dirnames, *filenames]:
            path = here / name
            relative = str(path.relative_to(venv))
            if inside and (path.is_symlink() or not path.is_dir()):
                names.append(relative)  # a link to a directory is linked itself, like a file
            elif inside:
                dirs.append(relative)
            elif path.is_symlink():
                skeleton.append((relative, "link", str(path.readlink())))
            else:
                skeleton.append((relative, "dir" if path.is_dir() else "file", ""))
        dirnames[:] = [d for d in dirnames if not (here / d).is_symlink()]
    return skeleton, dirs, [(name, (venv / name).lstat().st_ino) for name in names]


def _startup_files(venv: Path) -> frozenset[str]:
    """The `.pth` files and start-up hooks at the top of the venv's site-packages."""
    found: set[str] = set()
    for site in site_packages(venv):
        try:
            names = [p.name for p in site.iterdir()]
        except OSError:
            continue
        found.update(n for n in names if n.endswith(".pth") or n in STARTUP_HOOKS)
    return frozenset(found)


def _build_base(
    layout: Layout,
    builder: VenvBuilder,
    bundled: BundledWheels,
    sources: Sources,
    key: str,
    max_age_s: float,
) -> None:
    """Build a base beside the others and publish it, unless a peer published one first."""
    root = layout.venvs_dir / BASE_DIR
    root.mkdir(parents=True, exist_ok=True)
    building = root / f"{BUILDING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        builder.create(building, prompt=BASE_PROMPT.decode())
        builder.install(building, [bundled.shim, bundled.sdk_requirement], sources)
        _warm_bytecode(builder, building)
        skeleton, dirs, files = _listing(building)
        manifest = Manifest(
            key=key,
            created_at=time.time(),
            built_at=str(building),
            distributions=builder.dependencies(building),
            skeleton=skeleton,
            dirs=dirs,
            files=files,
        )
        atomic_write_bytes(building / MANIFEST, msgspec.json.encode(manifest))
        with _locked(layout) as held:
            if held and find_base(layout, key, max_age_s) is None:
                remove_tree(root / key)  # an expired base of the same key
                building.rename(root / key)
                _prune(root, keep=key)
    finally:
        remove_tree(building)  # unless it was published


def _abandoned_build(entry: Path) -> bool:
    """A `.building-<pid>-…` directory whose process is gone."""
    if not entry.name.startswith(BUILDING_PREFIX):
        return False
    pid = entry.name[len(BUILDING_PREFIX) :].partition("-")[0]
    return not (pid.isdigit() and pid_alive(int(pid)))


def _warm_bytecode(builder: VenvBuilder, venv: Path) -> None:
    done = run(
        [venv_python(venv), "-c", WARM_IMPORTS],
        env=builder.env,
        cwd=builder.cwd,
        timeout_s=WARM_TIMEOUT_S,
        cancel=builder.cancel,
    )
    if not done.ok:
        raise InstallFailed("the base venv cannot import the SDK", data={"output_tail": done.tail})


def _prune(root: Path, *, keep: str) -> None:
    """Remove every other base: no clone can be reading one (the lock is held)."""
    for entry in _entries(root):
        if entry.name != keep and not entry.name.startswith(BUILDING_PREFIX):
            remove_tree(entry)


def _entries(root: Path) -> Sequence[Path]:
    try:
        return sorted(root.iterdir())
    except OSError:
        return []
