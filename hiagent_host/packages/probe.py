"""Probe a freshly built venv: its own interpreter loads every plugin and describes it.

`<venv>/bin/python -m hiagent_shim --describe` prints one JSON document on stdout:
`{"ok": true, "handshake": {..., "plugins": [...]}, "metadata": {plugin: Metadata}}`, or
`{"ok": false, "error": {"code", "message", "data"}}` and exits 1 when a plugin cannot be
loaded. The probe runs with the environment the plugin processes will get, a scratch data
directory, and `packages.probe_timeout_s`; only a venv that answers it becomes current. Like
a plugin process, it starts through `hiagent_shim.boot` (it dies with the host) and, when
there is a sandbox, in the package's jail (the new venv read-only, the scratch data directory
writable, the package's `network` setting), so plugin code run at import can neither change
the venv nor outlive the host.

`start_probe` starts the same probe (`--describe --wait`) before the plugin is installed, so
that the interpreter start-up and the SDK import overlap the installer; `StartedProbe.result`
then tells it to go, `abandon` kills it (and a fresh `probe` is run) when the install changed
anything it may already have imported.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from hiagent_host.config import PoolConfig
from hiagent_host.packages.errors import Cancelled, InstallFailed
from hiagent_host.packages.runner import Completed, RunOutcome, Watched, run, start
from hiagent_host.packages.sandbox import JAIL_TMP, Jail, setup_failure
from hiagent_host.packages.venv import venv_python

# The stdlib module every plugin process and probe starts through (hiagent_shim/boot.py).
BOOT_MODULE: Final = "hiagent_shim.boot"


@dataclass(frozen=True)
class ProbeResult:
    """What the venv said about itself."""

    plugins: list[str]
    metadata: dict[str, Any]
    handshake: dict[str, Any]


def probe_env(
    pool: PoolConfig, name: str, data_dir: Path, *, jailed: bool = False
) -> dict[str, str]:
    """What a plugin process of `name` gets: PATH, `pool.env_allow`, `pool.env`, its own env."""
    env = {"PATH": os.environ.get("PATH", os.defpath)}
    env |= {k: os.environ[k] for k in pool.env_allow if k in os.environ}
    env |= pool.env
    env |= pool.policy(name).env
    env["HIAGENT_PACKAGE_NAME"] = name
    env["HIAGENT_PLUGIN_DATA_DIR"] = str(data_dir)
    if jailed:
        env["TMPDIR"] = JAIL_TMP  # the host's TMPDIR is not mounted
    return env


@dataclass(frozen=True)
class ProbeJail:
    """The jail a probe runs in: the sandbox's, with the package's network setting."""

    jail: Jail
    network: bool


def probe_command(venv: Path, args: list[str], *, cwd: Path, jail: ProbeJail | None) -> list[str]:
    """`python -m hiagent_shim.boot SPEC ARGS` in `venv`, in `jail` if any (`venv` and `cwd`
    resolved: the jail shows them at their real paths)."""
    if jail is None:
        spec = json.dumps({"host_pid": os.getpid()})
        return [str(venv_python(venv)), "-m", BOOT_MODULE, spec, *args]
    inner = [str(venv_python(venv)), "-m", BOOT_MODULE, "{}", *args]
    return jail.jail.command(inner, venv=venv, data_dir=cwd, network=jail.network)


def probe(
    venv: Path,
    *,
    env: Mapping[str, str],
    expected_plugins: list[str],
    timeout_s: float,
    cancel: threading.Event,
    cwd: Path,
    jail: ProbeJail | None = None,
) -> ProbeResult:
    """Describe the plugins of the package named in `env`; InstallFailed unless all load."""
    done = run(
        probe_command(venv, ["--describe"], cwd=cwd, jail=jail),
        env=env,
        cwd=cwd,
        timeout_s=timeout_s,
        cancel=cancel,
        capture_stdout=True,
    )
    return _interpret(done, expected_plugins, timeout_s)


class StartedProbe:
    """A probe started ahead of the install it checks, waiting to be told to go."""

    def __init__(self, child: Watched) -> None:
        self._child = child

    def result(
        self, *, expected_plugins: list[str], timeout_s: float, cancel: threading.Event
    ) -> ProbeResult:
        """Tell it the venv is complete and read its description, as `probe` does."""
        self._child.send(b"go\n")  # if it died already, `finish` reports how
        return _interpret(self._child.finish(timeout_s, cancel=cancel), expected_plugins, timeout_s)

    def abandon(self) -> None:
        self._child.abandon()


def start_probe(
    venv: Path, *, env: Mapping[str, str], cwd: Path, jail: ProbeJail | None = None
) -> StartedProbe:
    """Start the probe of `venv` now; it imports the SDK, then waits for `result`."""
    child = start(
        probe_command(venv, ["--describe", "--wait"], cwd=cwd, jail=jail),
        env=env,
        cwd=cwd,
        capture_stdout=True,
        stdin_pipe=True,
    )
    return StartedProbe(child)


def _interpret(done: Completed, expected_plugins: list[str], timeout_s: float) -> ProbeResult:
    if done.outcome is RunOutcome.CANCELLED:
        raise Cancelled("install cancelled while probing the new venv")
    if done.outcome is not RunOutcome.EXITED:
        reason = (
            f"took longer than {timeout_s} s"
            if done.outcome is RunOutcome.TIMEOUT
            else done.outcome
        )
        raise _failed(f"the probe of the new venv {reason}", done)
    step = setup_failure(done.tail)
    if step is not None and done.returncode != 0:
        raise _failed(f"the probe's sandbox could not be set up: {step}", done)
    doc = _document(done.stdout)
    if doc is None:
        raise _failed(f"the probe printed no JSON document (exit status {done.returncode})", done)
    if not doc.get("ok"):
        error = _obj(doc.get("error"))
        data = _obj(error.get("data"))
        message = str(error.get("message") or "the probe failed")
        raise InstallFailed(
            f"the new venv failed its probe: {message}",
            data={"plugin": data.get("plugin"), "error": error, "stderr_tail": done.tail},
        )
    return _result(doc, expected_plugins, done)


def _document(stdout: bytes) -> dict[str, Any] | None:
    """The JSON object on stdout (the whole of it, or else its last line)."""
    text = stdout.decode("utf-8", "replace").strip()
    for candidate in (text, text.rpartition("\n")[2]):
        try:
            doc = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(doc, dict):
            return doc
    return None


def _result(doc: dict[str, Any], expected: list[str], done: Completed) -> ProbeResult:
    handshake = _obj(doc.get("handshake"))
    metadata = _obj(doc.get("metadata"))
    plugins = [str(p) for p in handshake.get("plugins") or metadata]
    missing = [p for p in expected if p not in plugins or p not in metadata]
    if missing:
        raise _failed(f"the probe did not describe plugin(s) {', '.join(map(repr, missing))}", done)
    return ProbeResult(
        plugins=list(expected),
        metadata={p: metadata[p] for p in expected},
        handshake=dict(handshake),
    )


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _failed(message: str, done: Completed) -> InstallFailed:
    return InstallFailed(
        message,
        data={"returncode": done.returncode, "stderr_tail": done.tail, "output_tail": done.tail},
    )
