"""`hiagent_shim.boot` prepares the process (limits, capabilities, parent-death signal), then
runs the shim with the arguments it was given, or refuses a bad SPEC."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from typing import Any, Final

import pytest

from hiagent_shim import boot

# Each check runs in a fresh interpreter: limits and capabilities cannot be given back.
RUN_TIMEOUT_S: Final = 30
REPORT: Final = """
import ctypes, json, resource, sys
from hiagent_shim import boot
{action}
libc = ctypes.CDLL(None)
sig = ctypes.c_int()
libc.prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({{
    "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
    "cap_eff": int(status["CapEff"], 16),
    "cap_bnd": int(status["CapBnd"], 16),
    "pdeathsig": sig.value,
}}))
"""


def report(action: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", REPORT.format(action=action)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def boot_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hiagent_shim.boot", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_limits_are_applied_and_never_raised_above_the_current_hard_limit() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    out = report(f"boot.apply_limits([['RLIMIT_NOFILE', 64, {hard + 1000}]])")
    assert out["nofile"] == [64, hard]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root holds capabilities to drop")
def test_dropped_capabilities_leave_every_set_the_bounding_set_too() -> None:
    dropped = (1 << boot.CAP_SYS_ADMIN) | (1 << boot.CAP_SYS_RESOURCE)
    out = report("boot.drop_capabilities(boot.NPROC_EXEMPTING_CAPS)")
    assert out["cap_eff"] & dropped == 0
    assert out["cap_bnd"] & dropped == 0
    assert out["cap_eff"] != 0  # only those two


def test_prepare_sets_the_parent_death_signal() -> None:
    out = report("assert boot.prepare({'limits': []})")
    assert out["pdeathsig"] == 9


def test_a_process_whose_host_is_gone_already_exits_at_once_without_running_the_shim() -> None:
    done = boot_run(json.dumps({"host_pid": 1}), "--describe")  # its parent is not pid 1
    assert done.returncode == boot.EXIT_ORPHANED
    assert done.stdout == ""


def test_the_shim_runs_with_the_arguments_after_spec() -> None:
    done = boot_run(json.dumps({"host_pid": os.getpid()}), "--no-such-option")
    assert done.returncode == 2
    assert "usage: python -m hiagent_shim [--describe [--wait]]" in done.stderr


@pytest.mark.parametrize("spec", [None, "not json", "[1, 2]"])
def test_a_missing_or_bad_spec_is_a_usage_error(spec: str | None) -> None:
    done = boot_run() if spec is None else boot_run(spec)
    assert done.returncode == boot.EXIT_USAGE
    assert done.stderr.startswith(boot.USAGE)
