"""An install probe stuck in a plugin's import dies with a SIGKILLed host, in a sandbox and
without one (it reads nothing from the host: only the kernel can end it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

from hiagent_host.config import load_config
from hiagent_host.packages import sandbox
from hiagent_host.pool.procfs import is_running
from tests.packages.support import WAIT_S, processes_mentioning, write_runtime_toml
from tests.pool.support import wait_for

REPO: Final = Path(__file__).resolve().parents[2]
# The host: start the probe of an installed venv as an install does, say so, wait to be killed.
HOST_SCRIPT: Final = """
import sys, threading
from pathlib import Path
from hiagent_host.config import load_config
from hiagent_host.packages import PackageManager, sandbox
from hiagent_host.packages.probe import ProbeJail, probe, probe_env

config = load_config(sys.argv[1], use_lookup=False, environ={})
manager = PackageManager(config)
wheel = Path(sys.argv[2])
record = manager.install(wheel.as_uri(), wheel.name, force=True)
venv = manager.venv_dir(record).resolve()
data = Path(sys.argv[3]).resolve()
(data / "slow-import").write_text("3600")  # pool_misbehave sleeps this long at import
jail = sandbox.jail(config)
env = probe_env(config.pool, record.name, data, jailed=jail is not None)
print("probing", flush=True)
probe(
    venv, env=env, expected_plugins=record.plugins, timeout_s=3600, cancel=threading.Event(),
    cwd=data, jail=ProbeJail(jail, True) if jail is not None else None,
)
"""


def probe_processes(marker: str, *, python_only: bool = False) -> list[int]:
    """Live processes whose environment carries `marker` (the probe, its jail, whatever it
    started); `python_only`: only the probe's interpreter."""
    found = set(processes_mentioning(marker + "\0", where="environ"))
    if python_only:
        found &= set(processes_mentioning("hiagent_shim.boot"))
    return sorted(pid for pid in found if is_running(pid))


@pytest.mark.parametrize("mode", ["on", "off"])
def test_a_waiting_probe_dies_with_a_sigkilled_host(
    tmp_path: Path, wheelhouse: Path, built_wheels: dict[str, Path], mode: str
) -> None:
    config = write_runtime_toml(tmp_path / "runtime.toml", tmp_path / "store", wheelhouse)
    config.write_text(config.read_text() + f'[pool]\nsandbox = "{mode}"\n', encoding="utf-8")
    found = sandbox.status(load_config(config, use_lookup=False, environ={}))
    if mode == "on" and not found.active:
        pytest.skip(f"no sandbox on this machine: {found.reason}")
    data = tmp_path / "probe-data"
    data.mkdir()
    marker = f"HIAGENT_PLUGIN_DATA_DIR={data.resolve()}"
    data = data.resolve()
    host = subprocess.Popen(
        [sys.executable, "-c", HOST_SCRIPT, str(config), str(built_wheels["pool_misbehave"]), data],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert host.stdout is not None
        assert host.stdout.readline() == b"probing\n"
        wait_for(lambda: probe_processes(marker, python_only=True) != [], "the probe", WAIT_S)
        probes = probe_processes(marker)
        host.send_signal(signal.SIGKILL)
        host.wait(timeout=WAIT_S)
        wait_for(lambda: not any(map(is_running, probes)), "the probe to die", WAIT_S)
        assert probe_processes(marker) == []
    finally:
        if host.poll() is None:
            host.kill()
            host.wait(timeout=WAIT_S)
        if host.stdout is not None:
            host.stdout.close()
