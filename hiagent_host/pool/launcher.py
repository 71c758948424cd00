"""Start one plugin child: its command line, its environment, its resource limits, the spawn.

The child is the shim in the package's venv, in its own session (so its whole process tree is
one process group), in the package's data directory, with an allow-listed environment. It is
started as `<venv>/bin/python -c BOOT SPEC`: BOOT runs a short stdlib wrapper (carried in the
environment variable `HIAGENT_WRAPPER`, which it removes, so `ps` shows a short command line)
that prepares the process, then runs `hiagent_shim` in it with `runpy`, as `-m` would.
(`preexec_fn` would run Python in a forked copy of a multi-threaded host, which is not safe;
exec-ing the shim from the wrapper would cost a second interpreter start and, for a root host
with `processes`, would clear the parent-death signal.) The wrapper:

- `PR_SET_PDEATHSIG(SIGKILL)`: the kernel kills the child when the host's thread that started
  it dies, even by SIGKILL, even if the child is too wedged to notice its stdin closing (the
  shim's own way out). Its grandchildren are not covered: they die with the group when the
  pool stops the child, not when the host is killed.
- the package's resource limits (`setrlimit`).

`RLIMIT_NPROC` counts the processes of the child's *real* user and never binds root (the kernel
lets uid 0, or a holder of CAP_SYS_RESOURCE/CAP_SYS_ADMIN, fork past it). So when the host runs
as root and a package has `processes`, the wrapper drops those two capabilities (from every
set, the bounding set too) and sets its real uid to a private, otherwise unused uid; the
effective uid stays 0 so the venv and data stay readable. The kernel then counts that child's
tree on its own.
This contains a runaway fork loop; it is not a sandbox (a hostile plugin running as root can
undo it): run the host as an unprivileged user for isolation.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.abc
from packaging.utils import canonicalize_name

from hiagent_host.config import PLUGIN_CONFIG_ENV, PackagePolicy, PluginStorageConfig, PoolConfig
from hiagent_host.pool.plugin_config import plugin_config

# PATH after the venv's own bin: the usual system directories, never the host's PATH.
SAFE_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
# RLIMIT_CPU: the soft limit sends SIGXCPU (the exit reason names it); the hard limit,
# this much later, SIGKILLs a child that ignores it.
CPU_HARD_MARGIN_S: Final = 1
# Private real uids for root hosts' NPROC accounting: a range no distribution allocates.
PRIVATE_UID_BASE: Final = 2_000_000_000
PRIVATE_UID_SPAN: Final = 1 << 24
# Linux capability numbers and prctl options (linux/capability.h, linux/prctl.h).
CAP_SYS_ADMIN: Final = 21
CAP_SYS_RESOURCE: Final = 24
PR_SET_PDEATHSIG: Final = 1
PR_CAPBSET_DROP: Final = 24
CAPABILITY_VERSION_3: Final = 0x20080522  # capget/capset: two 32-bit sets per kind
# The wrapper's exit status when the host died before the child could ask to die with it.
EXIT_ORPHANED: Final = 75

RLIMITS: Final = {
    "memory_bytes": "RLIMIT_AS",
    "cpu_s": "RLIMIT_CPU",
    "open_files": "RLIMIT_NOFILE",
    "processes": "RLIMIT_NPROC",
}

# Stdlib only: prepares the process, then runs the shim. It travels in WRAPPER_ENV, so the
# command line (what `ps` shows) stays short: `python -c BOOT SPEC`.
WRAPPER_ENV: Final = "HIAGENT_WRAPPER"
BOOT: Final = f"import os; exec(os.environ.pop({WRAPPER_ENV!r}))"
WRAPPER: Final = f"""
import json, os, resource, runpy, signal, sys
spec = json.loads(sys.argv[1])
for name, soft, hard in spec["limits"]:
    res = getattr(resource, name)
    cur = resource.getrlimit(res)[1]
    if cur != resource.RLIM_INFINITY:
        soft, hard = min(soft, cur), min(hard, cur)
    resource.setrlimit(res, (soft, hard))
if sys.platform == "linux":
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    uid = spec.get("private_uid")
    if uid is not None and os.geteuid() == 0:
        class Header(ctypes.Structure):
            _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
        class Sets(ctypes.Structure):
            _fields_ = [(n, ctypes.c_uint32) for n in ("effective", "permitted", "inheritable")]
        header, sets = Header({CAPABILITY_VERSION_3}, 0), (Sets * 2)()
        keep = ~((1 << {CAP_SYS_ADMIN}) | (1 << {CAP_SYS_RESOURCE})) & 0xFFFFFFFF
        if libc.capget(ctypes.byref(header), sets) != 0:
            raise OSError(ctypes.get_errno(), "capget failed")
        for field in ("effective", "permitted", "inheritable"):
            setattr(sets[0], field, getattr(sets[0], field) & keep)
        for cap in ({CAP_SYS_ADMIN}, {CAP_SYS_RESOURCE}):
            if libc.prctl({PR_CAPBSET_DROP}, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")
        if libc.capset(ctypes.byref(header), sets) != 0:
            raise OSError(ctypes.get_errno(), "capset failed")
        os.setresuid(uid, 0, 0)
    if libc.prctl({PR_SET_PDEATHSIG}, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != spec["host_pid"]:
        os._exit({EXIT_ORPHANED})
del spec
sys.argv = [sys.argv[0]]
runpy.run_module("hiagent_shim", run_name="__main__", alter_sys=True)
"""


def package_policy(pool: PoolConfig, name: str) -> PackagePolicy:
    """The `[pool.packages."<name>"]` table of `name` (any PEP 503 spelling), or the default."""
    wanted = canonicalize_name(name)
    for key, policy in pool.packages.items():
        if canonicalize_name(key) == wanted:
            return policy
    return PackagePolicy()


def limits(policy: PackagePolicy) -> list[tuple[str, int, int]]:
    """(resource name, soft, hard) for every limit the policy sets."""
    out = []
    for field, resource_name in RLIMITS.items():
        value: int | None = getattr(policy, field)
        if value is not None:
            hard = value + CPU_HARD_MARGIN_S if field == "cpu_s" else value
            out.append((resource_name, value, hard))
    return out


def command(python: Path, policy: PackagePolicy, *, host_is_root: bool) -> list[str]:
    """The child's argv: the wrapper, which runs the shim."""
    spec: dict[str, Any] = {"limits": limits(policy), "host_pid": os.getpid()}
    if policy.processes is not None and host_is_root:
        spec["private_uid"] = PRIVATE_UID_BASE + secrets.randbelow(PRIVATE_UID_SPAN)
    return [str(python), "-c", BOOT, json.dumps(spec)]


def environment(
    pool: PoolConfig,
    policy: PackagePolicy,
    *,
    name: str,
    version: str,
    venv_bin: Path,
    data_dir: Path,
    storage: PluginStorageConfig | None = None,
    host_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The child's whole environment: allow-listed host variables plus what config adds
    (`HIAGENT_PLUGIN_CONFIG` carries `[plugin_storage]`, credentials included)."""
    source = os.environ if host_env is None else host_env
    env = {key: source[key] for key in pool.env_allow if key in source}
    env["PATH"] = f"{venv_bin}:{SAFE_PATH}"
    env["HOME"] = str(data_dir)
    env |= pool.env
    env |= policy.env
    if storage is not None:
        operator = env.get(PLUGIN_CONFIG_ENV)
        env[PLUGIN_CONFIG_ENV] = plugin_config(storage, name, data_dir, operator)
    env["HIAGENT_PACKAGE_NAME"] = name
    env["HIAGENT_PACKAGE_VERSION"] = version
    env["HIAGENT_PLUGIN_DATA_DIR"] = str(data_dir)
    env[WRAPPER_ENV] = WRAPPER  # popped by the wrapper before any plugin code runs
    return env


async def spawn(argv: list[str], *, env: Mapping[str, str], cwd: Path) -> anyio.abc.Process:
    """Start the child in a new session with pipes on stdin, stdout and stderr."""
    return await anyio.open_process(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
    )
