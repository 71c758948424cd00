"""Start one plugin child: its command line, its environment, its resource limits, the spawn.

The child is the shim in the package's venv, in its own session (so its whole process tree is
one process group), in the package's data directory, with an allow-listed environment. It is
started as `<venv>/bin/python -m hiagent_shim.boot SPEC`: that stdlib module (see its
docstring) applies the package's resource limits (`setrlimit`) and `PR_SET_PDEATHSIG(SIGKILL)`,
then runs `hiagent_shim` in the same interpreter. (`preexec_fn` would run Python in a forked
copy of a multi-threaded host, which is not safe; exec-ing the shim from the wrapper would
cost a second interpreter start and, for a root host with `processes`, would clear the
parent-death signal.)

With a sandbox (`hiagent_host.packages.sandbox`), that command runs inside bubblewrap's jail:
bwrap's init is pid 1 of a new PID namespace and the shim pid 2, so everything the plugin
starts, double-forked daemons included, ends with the shim, and `--die-with-parent` ends it
all with the host, even when the host is SIGKILLed. Without one, the parent-death signal
covers the child only: its grandchildren die with its group when the pool stops it.

`RLIMIT_NPROC` counts the processes of the child's *real* user and never binds root (the kernel
lets uid 0 fork past it, whatever its capabilities). So when the host runs as root and a
package has `processes`, the wrapper sets its real uid to a private, otherwise unused uid
(the effective uid stays 0 so the venv and data stay readable) after dropping
CAP_SYS_ADMIN/CAP_SYS_RESOURCE; in a jail, bwrap leaves it only CAP_SETUID and CAP_SETPCAP for
that, and the wrapper drops them too. The kernel then counts that child's tree on its own.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from hiagent_host.config import PLUGIN_CONFIG_ENV, PackagePolicy, PluginStorageConfig, PoolConfig
from hiagent_host.packages import sandbox
from hiagent_host.packages.probe import BOOT_MODULE
from hiagent_host.packages.sandbox import Jail
from hiagent_host.pool import pipes
from hiagent_host.pool.plugin_config import plugin_config

# PATH after the venv's own bin: the usual system directories, never the host's PATH.
SAFE_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
# RLIMIT_CPU: the soft limit sends SIGXCPU (the exit reason names it); the hard limit,
# this much later, SIGKILLs a child that ignores it.
CPU_HARD_MARGIN_S: Final = 1
# Private real uids for root hosts' NPROC accounting: a range no distribution allocates.
PRIVATE_UID_BASE: Final = 2_000_000_000
PRIVATE_UID_SPAN: Final = 1 << 24
# What runs first in the child (stdlib, inside the venv): see hiagent_shim/boot.py.
WRAPPER_MODULE: Final = BOOT_MODULE
# The capabilities a jailed root child keeps for the wrapper's uid switch (then drops).
UID_SWITCH_CAPS: Final = ("CAP_SETUID", "CAP_SETPCAP")
# Inside a jail, temp files go to its private, size-bounded tmp.
JAIL_TMPDIR: Final = sandbox.JAIL_TMP

RLIMITS: Final = {
    "memory_bytes": "RLIMIT_AS",
    "cpu_s": "RLIMIT_CPU",
    "open_files": "RLIMIT_NOFILE",
    "processes": "RLIMIT_NPROC",
}


def limits(policy: PackagePolicy) -> list[tuple[str, int, int]]:
    """(resource name, soft, hard) for every limit the policy sets."""
    out = []
    for field, resource_name in RLIMITS.items():
        value: int | None = getattr(policy, field)
        if value is not None:
            hard = value + CPU_HARD_MARGIN_S if field == "cpu_s" else value
            out.append((resource_name, value, hard))
    return out


def command(
    python: Path,
    policy: PackagePolicy,
    *,
    host_is_root: bool,
    jail: Jail | None = None,
    data_dir: Path | None = None,
    writable: Sequence[Path] = (),
) -> list[str]:
    """The child's argv: the wrapper, which runs the shim, in `jail` if any.

    With a jail, `python` is `<venv>/bin/python` of a resolved venv and `data_dir` is given;
    `writable` are further resolved directories the jail binds writable.
    """
    spec: dict[str, Any] = {"limits": limits(policy)}
    private_uid = policy.processes is not None and host_is_root
    if private_uid:
        spec["private_uid"] = PRIVATE_UID_BASE + secrets.randbelow(PRIVATE_UID_SPAN)
    if jail is None:
        spec["host_pid"] = os.getpid()
        return [str(python), "-m", WRAPPER_MODULE, json.dumps(spec)]
    if data_dir is None:
        raise ValueError("a jailed child needs its data directory")
    spec["drop_all_caps"] = private_uid
    inner = [str(python), "-m", WRAPPER_MODULE, json.dumps(spec)]
    return jail.command(
        inner,
        venv=python.parent.parent,
        data_dir=data_dir,
        writable=writable,
        network=policy.network,
        keep_caps=UID_SWITCH_CAPS if private_uid else (),
    )


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
    jailed: bool = False,
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
    if jailed:
        env["TMPDIR"] = JAIL_TMPDIR  # the host's TMPDIR is not mounted
    return env


async def spawn(argv: list[str], *, env: Mapping[str, str], cwd: Path) -> pipes.ChildProcess:
    """Start the child in a new session with pipes on stdin, stdout and stderr (the files a
    jail copies in are opened for it meanwhile); its stdout is pushed (see pool/pipes.py)."""
    with sandbox.opened(argv) as (final, fds):
        return await pipes.spawn(final, env=env, cwd=cwd, pass_fds=fds)
