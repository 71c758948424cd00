"""The README quick start, run command by command as a newcomer types it.

Substitutions, and only these: the install line is what made the dev venv this test runs in,
so it is not run again; `serve` runs in a scratch checkout (a link to `.venv`); the second
terminal's commands run in another scratch directory, outside any checkout, with the dev
venv active (its `bin` first on PATH, as `source .venv/bin/activate` does); `HIAGENT_CONFIG`
points at a runtime.toml that keeps data in the scratch directory and installs dependencies
offline from the test wheelhouse; the port is a free one instead of 8000.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Final

import httpx

from tests.api.support import ROOT, LiveServer, free_port, write_config

README: Final = ROOT / "README.md"
# Each command of the session answers within seconds (the install builds one small venv).
COMMAND_TIMEOUT_S: Final = 300
STOP_TIMEOUT_S: Final = 30


def quickstart_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("<!-- quickstart:begin -->", 1)[1].split("<!-- quickstart:end -->", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, re.S)


def commands(block: str) -> list[str]:
    joined = block.replace("\\\n", " ")
    return [
        line.strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")
    ]


def test_the_readme_quick_start_runs_as_written(tmp_path: Path, wheelhouse: Path) -> None:
    install_block, serve_block, session_block = quickstart_blocks()
    [install] = commands(install_block)
    assert "pip install -e" in install  # what made the dev venv this test runs in
    [serve] = commands(serve_block)
    session = commands(session_block)

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / ".venv").symlink_to(ROOT / ".venv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    port = free_port()
    config = write_config(tmp_path / "runtime.toml", tmp_path / "data", wheelhouse, port)
    env = {**os.environ, "HIAGENT_CONFIG": str(config), "HIAGENT_SERVER_PORT": str(port)}
    venv_bin = Path(sys.executable).parent
    active = env | {"PATH": f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"}

    def localise(command: str) -> str:
        return command.replace("127.0.0.1:8000", f"127.0.0.1:{port}")

    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        ["bash", "-c", localise(serve)], cwd=checkout, env=env,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        live = LiveServer(config, port, tmp_path / "serve.log")
        live.proc = server
        live.wait_ready()
        outputs = []
        for command in session:
            done = subprocess.run(
                ["bash", "-c", localise(command)], cwd=elsewhere, env=active,
                capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
            )  # fmt: skip
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            outputs.append(done.stdout)
        ping, created, built, installed, metadata, greeted, counted, ps = outputs
        assert json.loads(ping) == {"message": "pong"}
        assert (elsewhere / "hiagent-plugin-hello" / "pyproject.toml").is_file(), created
        assert Path(built.strip()).is_file()
        assert Path(built.strip()).is_relative_to(elsewhere)
        assert json.loads(installed)["data"]["name"] == "hiagent-plugin-hello"
        assert list(json.loads(metadata)["data"][0]["tools"]) == ["greet", "count_words"]
        assert json.loads(greeted) == {"data": "Hello, Ada!", "error": None}
        assert json.loads(counted)["data"] == {"words": 3, "characters": 13}
        assert "hiagent-plugin-hello" in ps
        assert httpx.get(f"http://127.0.0.1:{port}/docs").status_code == 200
        console = httpx.get(f"http://127.0.0.1:{port}/", follow_redirects=True)
        assert console.url.path == "/console"
    finally:
        os.killpg(server.pid, signal.SIGINT)  # Ctrl-C, as the README says
        code = server.wait(timeout=STOP_TIMEOUT_S)
        log.close()
    assert code == 0
