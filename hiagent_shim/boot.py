"""`python -m hiagent_shim.boot SPEC [ARGS]`: prepare this process, then run the shim in it.

The host starts every plugin process and install probe through this module (inside the
sandbox when there is one). SPEC is one JSON object:

- `limits`: `[[resource name, soft, hard], ...]`, applied with `setrlimit` (never above the
  hard limit the process already has);
- `private_uid` (a root host with a process limit only): the real uid to switch to, so that
  `RLIMIT_NPROC` binds (the kernel never counts uid 0); the effective uid stays 0 so the venv
  and data dir stay readable. The capabilities that would undo it are dropped first;
- `drop_all_caps`: drop every capability from every set (the sandbox keeps only the two the
  uid switch needs, for this module to use and drop);
- `host_pid` (outside a sandbox only): the host's pid; if the parent is another process by
  the time the parent-death signal is set, the host died first and this exits at once.

On Linux it then asks the kernel for SIGKILL when the parent dies (`PR_SET_PDEATHSIG`), and
runs `hiagent_shim` with ARGS as `-m` would. Stdlib only: it runs in every plugin venv.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import runpy
import signal
import sys
from collections.abc import Iterable, Sequence
from typing import Any, Final

# Linux capability numbers and prctl options (linux/capability.h, linux/prctl.h).
CAP_SYS_ADMIN: Final = 21
CAP_SYS_RESOURCE: Final = 24
PR_SET_PDEATHSIG: Final = 1
PR_CAPBSET_DROP: Final = 24
CAPABILITY_VERSION_3: Final = 0x20080522  # capget/capset: two 32-bit sets per kind
CAP_LAST_CAP_FILE: Final = "/proc/sys/kernel/cap_last_cap"
# Capabilities that let a root process fork past RLIMIT_NPROC.
NPROC_EXEMPTING_CAPS: Final = (CAP_SYS_ADMIN, CAP_SYS_RESOURCE)
# The exit status when the host died before this process could ask to die with it.
EXIT_ORPHANED: Final = 75
EXIT_USAGE: Final = 2
USAGE: Final = "usage: python -m hiagent_shim.boot SPEC [shim arguments]"


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Sets(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in ("effective", "permitted", "inheritable")]


def apply_limits(limits: Iterable[Sequence[Any]]) -> None:
    """`setrlimit` for each `(resource name, soft, hard)`, capped at the current hard limit."""
    for name, soft, hard in limits:
        res = getattr(resource, str(name))
        current = resource.getrlimit(res)[1]
        if current != resource.RLIM_INFINITY:
            soft, hard = min(int(soft), current), min(int(hard), current)
        resource.setrlimit(res, (int(soft), int(hard)))


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what} failed: {os.strerror(errno)}")


def last_capability() -> int:
    """The highest capability number this kernel knows."""
    with open(CAP_LAST_CAP_FILE, encoding="ascii") as f:
        return int(f.read())


def drop_capabilities(caps: Iterable[int]) -> None:
    """Remove `caps` from the bounding set and the effective, permitted, inheritable sets."""
    libc = _libc()
    wanted = list(caps)
    header, sets = _Header(CAPABILITY_VERSION_3, 0), (_Sets * 2)()
    _check(libc.capget(ctypes.byref(header), sets), "capget")
    for cap in wanted:
        _check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"prctl(PR_CAPBSET_DROP, {cap})")
        word, bit = divmod(cap, 32)
        for field in ("effective", "permitted", "inheritable"):
            setattr(sets[word], field, getattr(sets[word], field) & ~(1 << bit) & 0xFFFFFFFF)
    _check(libc.capset(ctypes.byref(header), sets), "capset")


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies."""
    _check(_libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def prepare(spec: dict[str, Any]) -> bool:
    """Apply SPEC to this process; False if the host is gone already (see the docstring)."""
    apply_limits(spec.get("limits", []))
    if sys.platform != "linux":
        return True
    uid = spec.get("private_uid")
    if uid is not None and os.geteuid() == 0:
        drop_capabilities(NPROC_EXEMPTING_CAPS)
        os.setresuid(int(uid), 0, 0)
    if spec.get("drop_all_caps"):
        drop_capabilities(range(last_capability() + 1))
    die_with_parent()
    host_pid = spec.get("host_pid")
    return host_pid is None or os.getppid() == host_pid


def main(argv: list[str]) -> int:
    """Prepare the process from `argv[0]` (SPEC), then run the shim with the rest."""
    if not argv:
        print(USAGE, file=sys.stderr)
        return EXIT_USAGE
    try:
        spec = json.loads(argv[0])
    except ValueError:
        print(f"{USAGE}: SPEC is not JSON", file=sys.stderr)
        return EXIT_USAGE
    if not isinstance(spec, dict):
        print(f"{USAGE}: SPEC is not a JSON object", file=sys.stderr)
        return EXIT_USAGE
    if not prepare(spec):
        return EXIT_ORPHANED
    sys.argv = [sys.argv[0], *argv[1:]]
    runpy.run_module("hiagent_shim", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
