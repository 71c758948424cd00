"""The jail of every plugin process and install probe: whether there is one, and its bwrap argv.

On Linux, with bubblewrap (`bwrap`), a plugin process runs in its own PID, mount, IPC and
cgroup namespaces (and, for a package with `network = false`, an empty network namespace),
with no capabilities and no new privileges:

- read-only: the system directories (`/usr` and its merged-usr links), a few files of `/etc`
  that name resolution, TLS and time zones need, the interpreter's prefix, the package's venv
  (its hard links share inodes with the base venv, uv's cache and other venvs: only this
  read-only path reaches them) and wherever the venv's symlinks lead outside it;
- writable: the package's data directory, and a private `/tmp` (and `/dev/shm`) of at most
  `pool.sandbox_tmp_bytes` each, gone with the process;
- nothing else: the configuration, API keys file, state directory (logs, jobs, other packages'
  data) and other venvs are not mounted, and any of them under a mounted directory is covered
  with an empty one.

bwrap's own init is pid 1 of the namespace and ends it, killing everything left in it, as soon
as the plugin process exits; `--die-with-parent` kills it all when the host dies, even by
SIGKILL. `pool.sandbox` says whether to sandbox: `on` (refuse to start without it), `off`, or
`auto` (whenever a trial jail starts here; otherwise run unsandboxed and say why).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from hiagent_host.config import Config
from hiagent_host.errors import ConfigError

BWRAP_PACKAGE: Final = "bubblewrap"
MECHANISM: Final = "bubblewrap"
# PATH for the trial jail and for looking bwrap up when the host has no PATH.
SYSTEM_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
# The trial jail runs `true`: it answers in milliseconds; longer means something is wrong.
TRIAL_TIMEOUT_S: Final = 10.0
# Directories mounted read-only at their own paths (those that are symlinks are recreated as
# symlinks, as on merged-usr systems).
SYSTEM_DIRS: Final = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What of /etc a process needs for users, name resolution, TLS, time zones and the loader;
# none of it is secret (no shadow, no keys).
# Files are copied in (bwrap's `--file`: no mount, read afresh at every start), or recreated
# as symlinks when they lead into a mounted directory (/etc/localtime names its zone so);
# directories are mounted. Every mount costs bwrap a pass over the mount table.
ETC_FILES: Final = (
    "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/hosts", "/etc/host.conf",
    "/etc/resolv.conf", "/etc/gai.conf", "/etc/services", "/etc/protocols", "/etc/localtime",
    "/etc/timezone", "/etc/mime.types", "/etc/ld.so.cache", "/etc/os-release",
)  # fmt: skip
ETC_DIRS: Final = ("/etc/ssl", "/etc/ca-certificates", "/etc/pki", "/etc/alternatives")
# A pseudo-option of our argv: `--file-from PATH DEST` becomes bwrap's `--file FD DEST`, with
# PATH opened, when the command is spawned (see `opened`).
FILE_FROM: Final = "--file-from"
# Flags of every jail: see the module docstring. (No UTS namespace: without capabilities a
# plugin cannot set the host name anyway, and every namespace costs time at each start.)
BASE_FLAGS: Final = (
    "--unshare-pid", "--unshare-ipc", "--unshare-cgroup-try",
    "--die-with-parent", "--new-session", "--cap-drop", "ALL",
)  # fmt: skip
# What bwrap's own error lines start with (a failed step of setting up the jail).
BWRAP_ERROR_PREFIX: Final = "bwrap: "
# Symlink chains longer than this are loops (the kernel gives up at 40).
MAX_SYMLINK_HOPS: Final = 40
# Where the private tmp is, inside.
JAIL_TMP: Final = "/tmp"


@dataclass(frozen=True)
class SandboxStatus:
    """What `pool.sandbox` came to on this machine: whether jails are used, and why."""

    mode: str  # as configured: auto, on, off
    active: bool
    reason: str
    program: str | None = None  # the bwrap used, when active

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "active": self.active, "reason": self.reason}


@dataclass(frozen=True)
class Jail:
    """How to put one process into a sandbox; see the module docstring."""

    program: str
    tmp_bytes: int
    hidden: tuple[Path, ...]  # host paths never shown, even under a mounted directory

    def command(
        self,
        argv: Sequence[str],
        *,
        venv: Path,
        data_dir: Path,
        network: bool,
        writable: Sequence[Path] = (),
        keep_caps: Sequence[str] = (),
    ) -> list[str]:
        """bwrap's argv running `argv` (its interpreter in `venv`) in the package's jail.

        `venv`, `data_dir` and `writable` (further directories the package may write, such as
        its plugin-storage directory) must be resolved paths: they appear inside at the same
        paths.
        """
        mounts = system_mounts()  # (inside path, bwrap arguments)
        # mounted host directories, to find what must be hidden
        roots = [Path(path) for path, args in mounts if args[0] == "--ro-bind"]
        mounts += [(p, ["--ro-bind", p, p]) for p in ETC_DIRS if Path(p).is_dir()]
        mounts += [(p, args) for p, args in _etc_files(roots)]
        extras, links = _outside(venv, roots)
        for extra in extras:
            mounts.append((str(extra), ["--ro-bind", str(extra), str(extra)]))
            roots.append(extra)
        mounts += [(path, ["--symlink", text, path]) for path, text in links]
        size = str(self.tmp_bytes)
        mounts.append((JAIL_TMP, ["--size", size, "--tmpfs", JAIL_TMP]))
        for hidden in self.hidden:
            if any(hidden.is_relative_to(root) for root in roots):
                where = str(hidden)
                cover = ["--tmpfs", where] if hidden.is_dir() else ["--ro-bind", "/dev/null", where]
                mounts.append((where, cover))
        mounts.append((str(venv), ["--ro-bind", str(venv), str(venv)]))
        for own in (data_dir, *writable):
            mounts.append((str(own), ["--bind", str(own), str(own)]))
        # Parents before children: a later mount would hide what was mounted below it.
        mounts.sort(key=lambda m: len(Path(m[0]).parts))
        out = [self.program, *BASE_FLAGS]
        for cap in keep_caps:
            out += ["--cap-add", cap]
        if not network:
            out.append("--unshare-net")
        out += ["--proc", "/proc", "--dev", "/dev", "--size", size, "--tmpfs", "/dev/shm"]
        for _, args in mounts:
            out += args
        out += ["--remount-ro", "/", "--chdir", str(data_dir), "--", *argv]
        return out


@contextlib.contextmanager
def opened(argv: Sequence[str]) -> Iterator[tuple[list[str], list[int]]]:
    """`argv` with each `--file-from PATH DEST` made bwrap's `--file FD DEST` (PATH opened;
    one that has gone is left out), and the fds to pass; they are closed on leaving."""
    out: list[str] = []
    fds: list[int] = []
    try:
        i = 0
        while i < len(argv):
            if argv[i] != FILE_FROM:
                out.append(argv[i])
                i += 1
                continue
            source, dest = argv[i + 1], argv[i + 2]
            i += 3
            try:
                fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            fds.append(fd)
            out += ["--file", str(fd), dest]
        yield out, fds
    finally:
        for fd in fds:
            os.close(fd)


def _etc_files(mounted: list[Path]) -> list[tuple[str, list[str]]]:
    """`ETC_FILES` that exist: symlinks into `mounted` as such, the others copied in."""
    out = []
    for name in ETC_FILES:
        path = Path(name)
        if path.is_symlink():
            target = _resolved(path)
            if any(target.is_relative_to(r) for r in mounted) and target.exists():
                out.append((name, ["--symlink", str(target), name]))
                continue
        if path.is_file():
            out.append((name, [FILE_FROM, name, name]))
    return out


def system_mounts() -> list[tuple[str, list[str]]]:
    """`SYSTEM_DIRS` as `(path, bwrap arguments)`: read-only binds, or the same symlinks."""
    out = []
    for name in SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():
            out.append((name, ["--symlink", str(path.readlink()), name]))
        elif path.is_dir():
            out.append((name, ["--ro-bind", name, name]))
    return out


def setup_failure(stderr_tail: str) -> str | None:
    """bwrap's own error line in a jailed process's stderr: the step that failed, if any."""
    for line in stderr_tail.splitlines():
        if line.startswith(BWRAP_ERROR_PREFIX):
            return line[len(BWRAP_ERROR_PREFIX) :].strip()
    return None


def status(config: Config) -> SandboxStatus:
    """Whether plugin processes are sandboxed under `config` (the trial runs once per setting)."""
    return _detect(config.pool.sandbox, config.pool.sandbox_program, config.pool.sandbox_tmp_bytes)


def jail(config: Config) -> Jail | None:
    """The jail to start plugin processes in, or None when `status` says there is none
    (ConfigError, as `require` raises it, when there must be one)."""
    found = require(config)
    if not found.active or found.program is None:
        return None
    return Jail(
        program=found.program,
        tmp_bytes=config.pool.sandbox_tmp_bytes,
        hidden=hidden_paths(config),
    )


def require(config: Config) -> SandboxStatus:
    """`status`, or ConfigError when `pool.sandbox = "on"` and there can be no sandbox."""
    found = status(config)
    if found.mode == "on" and not found.active:
        raise ConfigError(
            f'pool.sandbox = "on" but plugin processes cannot be sandboxed here: {found.reason}',
            data={"key": "pool.sandbox", "reason": found.reason},
        )
    return found


def hidden_paths(config: Config) -> tuple[Path, ...]:
    """What of the host's a jail must never show: config, keys, state, records, venvs."""
    paths = [config.paths.state_dir, config.paths.extensions_dir, config.paths.venvs_dir]
    if config.source != "<defaults>":
        paths.append(Path(config.source))
    if config.auth.api_keys_file is not None:
        paths.append(config.auth.api_keys_file)
    return tuple(_resolved(p) for p in paths)


@functools.cache
def _detect(mode: str, program: str, tmp_bytes: int) -> SandboxStatus:
    if mode == "off":
        return SandboxStatus(mode, False, 'pool.sandbox = "off"')
    if sys.platform != "linux":
        return SandboxStatus(mode, False, f"sandboxing needs Linux (this is {sys.platform})")
    found = shutil.which(program, path=os.environ.get("PATH") or SYSTEM_PATH)
    if found is None:
        return SandboxStatus(
            mode,
            False,
            f"{program!r} (bubblewrap) was not found on PATH; install the {BWRAP_PACKAGE} "
            "package or set pool.sandbox_program",
        )
    problem = _trial(found, tmp_bytes)
    if problem is not None:
        return SandboxStatus(mode, False, f"a trial jail with {found} failed: {problem}")
    return SandboxStatus(mode, True, f"{MECHANISM} ({found})", program=found)


def _trial(program: str, tmp_bytes: int) -> str | None:
    """Start `true` in a jail like the real ones (network namespace included); what failed."""
    argv = [program, *BASE_FLAGS, "--unshare-net", "--proc", "/proc", "--dev", "/dev"]
    for _, args in system_mounts():
        argv += args
    argv += ["--size", str(tmp_bytes), "--tmpfs", JAIL_TMP, "--", "true"]
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env={"PATH": SYSTEM_PATH},
            timeout=TRIAL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        text = done.stderr.decode("utf-8", "replace").strip()
        return setup_failure(text) or text or f"exit status {done.returncode}"
    return None


def _outside(venv: Path, mounted: list[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """What the venv needs besides itself: host directories (the interpreter's prefix, where
    its symlinks lead; not those mounted already) and the symlinks on the way there, as
    `(path, link text)`, recreated as they are rather than mounting their directories."""
    dirs: list[Path] = []
    targets, hops = _link_targets(str(venv), _stamp(venv))
    for target in targets:
        if not any(target.is_relative_to(r) for r in [*mounted, *dirs]):
            dirs = [o for o in dirs if not o.is_relative_to(target)] + [target]
    covered = [*mounted, *dirs]
    links = [(p, t) for p, t in hops if not any(Path(p).is_relative_to(r) for r in covered)]
    return dirs, links


def _stamp(venv: Path) -> tuple[int, ...]:
    """What changes when an installer adds to the venv (its directories' mtimes)."""
    dirs = [venv / "bin", *sorted(venv.glob("lib/python*/site-packages"))]
    out = []
    for path in dirs:
        try:
            out.append(path.stat().st_mtime_ns)
        except OSError:
            out.append(0)
    return tuple(out)


@functools.lru_cache(maxsize=256)
def _link_targets(
    venv: str, stamp: tuple[int, ...]
) -> tuple[tuple[Path, ...], tuple[tuple[str, str], ...]]:
    """The directories outside `venv` that it leads to (the interpreter's prefix, where
    `bin/python` leads, two levels up, or pyvenv.cfg's `home`, one up; symlinks' targets),
    and the symlinks outside it met on the way. Cached by `stamp`: a venv changes only
    while it is being built."""
    root = Path(venv)
    found: set[Path] = set()
    hops: dict[str, str] = {}
    home = _pyvenv_home(root)
    if home is not None:
        found.add(home.parent)
    for dirpath, dirnames, filenames in os.walk(venv):
        here = Path(dirpath)
        for name in [*dirnames, *filenames]:
            path = here / name
            if not path.is_symlink():
                continue
            target = _follow(path, root, hops)
            if target is None:
                continue
            if here.name == "bin" and name.startswith("python"):
                found.add(target.parent.parent)  # <prefix>/bin/python3.x → <prefix>
            else:
                found.add(target if target.is_dir() else target.parent)
    return tuple(sorted(found)), tuple(sorted(hops.items()))


def _follow(link: Path, root: Path, hops: dict[str, str]) -> Path | None:
    """Where `link` finally leads if that is outside `root` (else None); every symlink outside
    `root` on the way goes into `hops`."""
    path = link
    for _ in range(MAX_SYMLINK_HOPS):
        text = path.readlink()
        nxt = Path(os.path.normpath(path.parent / text))
        if not nxt.is_symlink():
            target = _resolved(nxt)
            return None if target.is_relative_to(root) else target
        if not nxt.is_relative_to(root):
            hops[str(nxt)] = str(nxt.readlink())
        path = nxt
    return None


def _pyvenv_home(venv: Path) -> Path | None:
    """The resolved `home` of the venv's pyvenv.cfg (the interpreter's bin directory)."""
    try:
        text = (venv / "pyvenv.cfg").read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "home" and value.strip():
            return _resolved(Path(value.strip()))
    return None


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path
