"""`hiagent-host ps` against a running server, and `serve` refusing a bad configuration."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Final

import httpx
import pytest

from hiagent_host.cli_serve import format_table
from tests.api.conftest import API_KEY, Installed
from tests.api.support import ROOT, LiveServer, free_port, serve_command, write_config

# The command answers at once: a local server, or nobody.
RUN_TIMEOUT_S: Final = 60


def hiagent_host(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hiagent_host", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip


def test_ps_prints_a_table_of_the_live_plugin_processes(
    client: httpx.Client, server: LiveServer, installed: Installed
) -> None:
    call = {"pkg": "hiagent-plugin-echo", "version": "0.1.0", "plugin": "echo", "tool": "echo"}
    assert client.post("/v1/RunPluginTool", json=call).status_code == 200
    done = hiagent_host("ps", "--url", server.url)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[:4] == ["PACKAGE", "VERSION", "PID", "STATE"]
    assert any(row.split()[:2] == ["hiagent-plugin-echo", "0.1.0"] for row in rows)


def test_ps_reads_the_address_and_key_from_the_config(guarded: LiveServer) -> None:
    done = hiagent_host("ps", "--config", str(guarded.config))
    assert done.returncode == 0, done.stderr
    done = hiagent_host("--json", "ps", "--config", str(guarded.config))
    assert isinstance(json.loads(done.stdout), list)


def test_ps_with_a_wrong_key_says_unauthorized(guarded: LiveServer) -> None:
    done = hiagent_host("ps", "--url", guarded.url, "--api-key", "wrong")
    assert done.returncode == 1
    assert "Unauthorized" in done.stderr
    assert API_KEY not in done.stderr


def test_ps_without_a_server_fails_with_a_clear_message() -> None:
    done = hiagent_host("ps", "--url", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 1
    assert "no server answering" in done.stderr


@pytest.mark.parametrize(
    ("toml", "options", "said"),
    [
        ("[server]\nprot = 8000\n", [], "prot"),
        ("[pool]\nstream_window = 0\n", [], "Expected `int` >= 1 - at `$.pool.stream_window`"),
        ("", ["--port", "70000"], "Expected `int` <= 65535 - at `$.server.port`"),
    ],
)
def test_serve_refuses_a_bad_config_naming_the_key(
    tmp_path: Path, toml: str, options: list[str], said: str
) -> None:
    config = tmp_path / "runtime.toml"
    config.write_text(toml)
    done = hiagent_host("serve", "--config", str(config), *options)
    assert done.returncode == 2
    assert "ConfigInvalid" in done.stderr
    assert said in done.stderr


def test_an_empty_process_list_is_said_in_words() -> None:
    assert format_table([]) == "no plugin processes running"


def test_serve_on_a_port_in_use_exits_1_with_a_clear_message(
    tmp_path: Path, wheelhouse: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path / "runtime.toml", tmp_path / "data", wheelhouse, port)
        done = hiagent_host("serve", "--config", str(config))
    assert done.returncode == 1
    assert "cannot serve on 127.0.0.1" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_json_logs_json_lines_whatever_the_config_says(
    tmp_path: Path, wheelhouse: Path
) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "runtime.toml", tmp_path / "data", wheelhouse, port, logging={"json": False}
    )
    live = LiveServer(config, port, tmp_path / "serve.log")
    with live.log_path.open("ab") as log:
        live.proc = subprocess.Popen(
            [*serve_command(config, port), "--json"], cwd=ROOT, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        live.wait_ready()
        assert httpx.get(f"{live.url}/ping", timeout=RUN_TIMEOUT_S).status_code == 200
    finally:
        assert live.stop() == 0
    access = [r for r in live.log_records() if r.get("logger") == "hiagent_host.access"]
    assert access, live.log()
    assert access[0]["path"] == "/ping"
