"""The served host: its sandbox in health, metrics and `ps`, `on`/`auto` without bubblewrap,
and no plugin daemon outliving the host, whether it is stopped or killed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from hiagent_host.config import load_config
from hiagent_host.errors import CONFIG_INVALID
from hiagent_host.packages import sandbox
from hiagent_host.pool.procfs import is_running
from tests.api.conftest import Installed, install
from tests.api.support import (
    INSTALL_TIMEOUT_S,
    ROOT,
    LiveServer,
    free_port,
    write_config,
)
from tests.pool.support import host_pid, wait_for

ESCAPE: Final = {"pkg": "hiagent-plugin-escape", "version": "0.1.0", "plugin": "escape"}
# `serve` refusing its config answers at once.
RUN_TIMEOUT_S: Final = 60
# After the host is gone, the kernel ends the jail at once; a daemon gets this long to be gone.
GONE_S: Final = 10.0


@pytest.fixture(scope="module")
def machine_sandbox(tmp_path_factory: pytest.TempPathFactory) -> sandbox.SandboxStatus:
    return sandbox.status(load_config(use_lookup=False, environ={}))


def needs_sandbox(found: sandbox.SandboxStatus) -> None:
    if not found.active:
        pytest.skip(f"no sandbox on this machine: {found.reason}")


def test_health_metrics_and_ps_show_the_sandbox(
    client: httpx.Client, server: LiveServer, installed: Installed
) -> None:
    found = sandbox.status(load_config(server.config))
    health = client.get("/v1/health").json()["data"]
    assert health["sandbox"] == found.to_dict()
    assert health["sandbox"]["mode"] == "auto"
    value = "1.0" if found.active else "0.0"
    assert f'hiagent_sandbox_active{{mode="auto"}} {value}' in client.get("/metrics").text
    call = {"pkg": "hiagent-plugin-echo", "version": "0.1.0", "plugin": "echo", "tool": "echo"}
    assert client.post("/v1/RunPluginTool", json=call).status_code == 200
    [echo] = [
        p
        for p in client.post("/v1/ListProcesses", json={}).json()["data"]
        if p["pkg"] == "hiagent-plugin-echo"
    ]
    assert echo["sandbox"] == ("bubblewrap" if found.active else "none")
    done = subprocess.run(
        [sys.executable, "-m", "hiagent_host", "ps", "--url", server.url],
        cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    header, *rows, last = done.stdout.splitlines()
    assert "SANDBOX" in header.split()
    assert any(row.startswith("hiagent-plugin-echo") and echo["sandbox"] in row for row in rows)
    state = "on" if found.active else "OFF"
    assert last == f"sandbox: auto, {state}: {found.reason}"
    starts = [r for r in server.log_records() if "sandbox" in str(r.get("message", ""))]
    assert any(found.reason in str(r["message"]) for r in starts)


def test_sandbox_on_without_bubblewrap_refuses_to_start_naming_what_is_missing(
    tmp_path: Path, wheelhouse: Path
) -> None:
    config = write_config(
        tmp_path / "runtime.toml", tmp_path / "data", wheelhouse, free_port(),
        pool={"sandbox": "on", "sandbox_program": "/nonexistent/bwrap"},
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "hiagent_host", "serve", "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 2
    assert CONFIG_INVALID in done.stderr
    assert "/nonexistent/bwrap" in done.stderr
    assert "bubblewrap" in done.stderr
    assert "Traceback" not in done.stderr


def test_sandbox_auto_without_bubblewrap_serves_and_says_it_runs_unsandboxed(
    tmp_path: Path, wheelhouse: Path, wheels: dict[str, Path]
) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "runtime.toml", tmp_path / "data", wheelhouse, port,
        pool={"sandbox_program": "/nonexistent/bwrap"},
    )  # fmt: skip
    live = LiveServer(config, port, tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=live.url, timeout=INSTALL_TIMEOUT_S) as client:
            found = client.get("/v1/health").json()["data"]["sandbox"]
            assert (found["mode"], found["active"]) == ("auto", False)
            assert "/nonexistent/bwrap" in found["reason"]
            assert install(client, wheels["echo"]).status_code == 200
            call = {"pkg": "hiagent-plugin-echo", "version": "0.1.0", "plugin": "echo"}
            response = client.post("/v1/RunPluginTool", json=call | {"tool": "echo", "input": {}})
            assert response.status_code == 200
    finally:
        live.stop()
    warnings = [r for r in live.log_records() if r.get("level") == "warning"]
    assert any("WITHOUT a sandbox" in str(r.get("message")) for r in warnings), live.log()


@pytest.fixture
def escape_server(
    tmp_path: Path, wheelhouse: Path, wheels: dict[str, Path], machine_sandbox: Any
) -> Iterator[tuple[LiveServer, httpx.Client]]:
    """A fresh server with the escape package installed."""
    needs_sandbox(machine_sandbox)
    port = free_port()
    config = write_config(tmp_path / "runtime.toml", tmp_path / "data", wheelhouse, port)
    live = LiveServer(config, port, tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=live.url, timeout=INSTALL_TIMEOUT_S) as client:
            assert install(client, wheels["escape"]).status_code == 200
            yield live, client
    finally:
        live.stop()


def spawn_daemon(client: httpx.Client) -> int:
    response = client.post("/v1/RunPluginTool", json=ESCAPE | {"tool": "spawn_daemon"})
    assert response.status_code == 200, response.text
    daemon = host_pid(response.json()["data"])
    assert is_running(daemon)
    return daemon


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_plugin_daemon_dies_with_the_host_stopped_or_killed(
    escape_server: tuple[LiveServer, httpx.Client], signum: signal.Signals
) -> None:
    live, client = escape_server
    daemon = spawn_daemon(client)
    live.signal(signum)
    live.wait()
    wait_for(lambda: not is_running(daemon), f"the daemon to be gone after {signum.name}", GONE_S)


def test_a_plugin_daemon_dies_when_its_package_is_deleted(
    escape_server: tuple[LiveServer, httpx.Client],
) -> None:
    _, client = escape_server
    daemon = spawn_daemon(client)
    body = {"pkg": ESCAPE["pkg"], "version": ESCAPE["version"]}
    response = client.post("/v1/DeletePackage", json=body)
    assert response.status_code == 200, response.text
    assert not is_running(daemon)
    assert json.loads(response.text)["error"] is None
