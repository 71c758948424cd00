"""Children start in their own session, with an allow-listed environment and their limits."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hiagent_host.config import PackagePolicy, PoolConfig
from hiagent_host.packages import names
from hiagent_host.pool import launcher
from hiagent_host.pool.procfs import is_running
from hiagent_shim import boot
from tests.pool.support import PACKAGES, Store, call, open_pool, plugin_pid

MIS = PACKAGES["pool_misbehave"]
# Output of a process started through the wrapper: its limits, uids and parent-death signal.
PROBE = """
import ctypes, json, os, resource
libc = ctypes.CDLL(None)
sig = ctypes.c_int()
libc.prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
print(json.dumps({
    "limits": {n: resource.getrlimit(getattr(resource, n)) for n in
               ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NOFILE", "RLIMIT_NPROC")},
    "uids": os.getresuid(),
    "cap_eff": int(
        next(x for x in open("/proc/self/status") if x.startswith("CapEff")).split()[1], 16
    ),
    "pdeathsig": sig.value,
}))
"""
# Test settings for the limits: a memory cap well above what a child needs, a fork cap
# well above the threads a child runs.
MEMORY_CAP_BYTES = 768 * 1024 * 1024
FORK_CAP = 40


def proc_cwd(pid: int) -> Path:
    return Path(f"/proc/{pid}/cwd").resolve()


def proc_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if item)


def user_processes() -> int:
    """How many tasks (threads included) the real user of this process runs now."""
    uid = os.getuid()
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(list((entry / "task").iterdir()))
            except OSError:
                continue
    return count


def test_the_environment_is_the_allow_list_plus_what_config_adds(tmp_path: Path) -> None:
    pool = PoolConfig(env_allow=["LANG", "TZ"], env={"HTTPS_PROXY": "http://proxy:3128"})
    policy = PackagePolicy(env={"PLUGIN_TOKEN": "t"})
    host_env = {"LANG": "C.UTF-8", "AWS_SECRET_ACCESS_KEY": "no", "PATH": "/host/bin"}
    env = launcher.environment(
        pool,
        policy,
        name="pkg",
        version="1.0",
        venv_bin=tmp_path / "bin",
        data_dir=tmp_path / "data",
        host_env=host_env,
    )
    assert env == {
        "LANG": "C.UTF-8",
        "PATH": f"{tmp_path / 'bin'}:{launcher.SAFE_PATH}",
        "HOME": str(tmp_path / "data"),
        "HTTPS_PROXY": "http://proxy:3128",
        "PLUGIN_TOKEN": "t",
        "HIAGENT_PACKAGE_NAME": "pkg",
        "HIAGENT_PACKAGE_VERSION": "1.0",
        "HIAGENT_PLUGIN_DATA_DIR": str(tmp_path / "data"),
    }


def test_in_a_jail_temp_files_go_to_its_private_tmp(tmp_path: Path) -> None:
    pool = PoolConfig(env_allow=["TMPDIR"])
    env = launcher.environment(
        pool,
        PackagePolicy(),
        name="pkg",
        version="1.0",
        venv_bin=tmp_path / "bin",
        data_dir=tmp_path / "data",
        host_env={"TMPDIR": "/host/tmp"},
        jailed=True,
    )
    assert env["TMPDIR"] == launcher.JAIL_TMPDIR


def test_package_policies_match_any_spelling_of_the_name() -> None:
    pool = PoolConfig(packages={"Pool_Misbehave": PackagePolicy(replicas=3)})
    assert pool.policy("pool-misbehave").replicas == 3
    assert pool.policy("other").replicas is None


def run_wrapper(policy: PackagePolicy, tmp_path: Path) -> dict[str, Any]:
    """What a process started by `launcher.command` reports, with PROBE as its shim."""
    fake_shim = tmp_path / "hiagent_shim"
    fake_shim.mkdir()
    (fake_shim / "__init__.py").write_text("")
    (fake_shim / "__main__.py").write_text(PROBE)
    shutil.copy(Path(boot.__file__), fake_shim / "boot.py")
    argv = launcher.command(Path(sys.executable), policy, host_is_root=os.geteuid() == 0)
    env = {"PATH": os.environ["PATH"]}
    done = subprocess.run(argv, capture_output=True, check=True, timeout=30, cwd=tmp_path, env=env)
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_the_wrapper_applies_every_limit_and_the_parent_death_signal_then_runs_the_shim(
    tmp_path: Path,
) -> None:
    policy = PackagePolicy(memory_bytes=1 << 30, cpu_s=100, open_files=64, processes=5000)
    report = run_wrapper(policy, tmp_path)
    assert report["limits"] == {
        "RLIMIT_AS": [1 << 30, 1 << 30],
        "RLIMIT_CPU": [100, 100 + launcher.CPU_HARD_MARGIN_S],
        "RLIMIT_NOFILE": [64, 64],
        "RLIMIT_NPROC": [5000, 5000],
    }
    assert report["pdeathsig"] == 9
    if os.geteuid() == 0:  # root: a private real uid, so RLIMIT_NPROC binds
        real, effective, _ = report["uids"]
        assert real >= launcher.PRIVATE_UID_BASE
        assert effective == 0
        dropped = (1 << boot.CAP_SYS_ADMIN) | (1 << boot.CAP_SYS_RESOURCE)
        assert report["cap_eff"] & dropped == 0


def test_without_limits_the_wrapper_changes_no_limit(tmp_path: Path) -> None:
    report = run_wrapper(PackagePolicy(), tmp_path)
    assert report["limits"]["RLIMIT_NOFILE"] == list(resource.getrlimit(resource.RLIMIT_NOFILE))
    assert report["uids"] == list(os.getresuid())
    assert report["pdeathsig"] == 9


@pytest.mark.anyio
async def test_a_child_runs_in_its_own_session_in_its_data_dir_with_only_its_environment(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIAGENT_TEST_HOST_SECRET", "must-not-leak")
    monkeypatch.setenv("TZ", "UTC")
    config = store.config(
        env_allow=["TZ"], env={"FROM_POOL": "1"}, packages={MIS: PackagePolicy(env={"OWN": "2"})}
    )
    async with open_pool(store, config) as pool:
        pid = await plugin_pid(pool, store)
        data_dir = store.data_root / names.dir_name(MIS) / names.version_dir(store.versions[MIS])
        # its own session and group (in a sandbox, led by bwrap's init, pid 1 inside)
        assert os.getsid(pid) == os.getpgid(pid) != os.getsid(0)
        assert proc_cwd(pid) == data_dir.resolve()
        env = proc_environ(pid)
        jailed = {"TMPDIR", "PWD"} if pool.sandbox.active else set()  # PWD: bwrap's --chdir
        assert set(env) == {  # /proc shows the environment the process started with
            "TZ", "PATH", "HOME", "FROM_POOL", "OWN", "HIAGENT_PACKAGE_NAME",
            "HIAGENT_PACKAGE_VERSION", "HIAGENT_PLUGIN_DATA_DIR", "HIAGENT_PLUGIN_CONFIG", *jailed,
        }  # fmt: skip
        storage = json.loads(env["HIAGENT_PLUGIN_CONFIG"])["storage"]
        assert storage == {
            "backend": "local_path",
            "local_path": {"base_dir": str(data_dir / "storage")},
        }
        assert env["TZ"] == "UTC"
        assert env["HOME"] == env["HIAGENT_PLUGIN_DATA_DIR"] == str(data_dir)
        assert env["PATH"].split(":")[0].endswith("/bin")
    assert not is_running(pid)


@pytest.mark.anyio
async def test_a_memory_bomb_under_a_memory_limit_fails_its_call_not_the_host(
    store: Store,
) -> None:
    name = PACKAGES["memhog"]
    config = store.config(packages={name: PackagePolicy(memory_bytes=MEMORY_CAP_BYTES)})
    async with open_pool(store, config) as pool:
        version = store.versions[name]
        with pytest.raises(Exception) as caught:  # noqa: PT011 - the code is checked below
            await pool.run_tool(
                name, version, "memhog", "allocate", {"chunk_mb": 16, "limit_mb": 4096}, None
            )
        assert getattr(caught.value, "code", None) == "MemoryError"
        small = {"chunk_mb": 1, "limit_mb": 8}
        assert await pool.run_tool(name, version, "memhog", "allocate", small, None) == 8


@pytest.mark.anyio
async def test_a_fork_bomb_under_a_process_limit_is_refused_by_the_kernel(store: Store) -> None:
    """As root the limit binds through the child's private real uid (see launcher.py)."""
    name = PACKAGES["forkbomb"]
    base = 0 if os.geteuid() == 0 else user_processes()
    cap = base + FORK_CAP
    config = store.config(packages={name: PackagePolicy(processes=cap)})
    async with open_pool(store, config) as pool:
        version = store.versions[name]
        forked = await pool.run_tool(
            name, version, "forkbomb", "fork_until_failure", {"limit": 10_000}, None
        )
        assert 0 < forked < FORK_CAP  # the kernel said no before the safety valve
        assert await call(pool, store, "pool_misbehave", "echo", text="host fine") == "host fine"
