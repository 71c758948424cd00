"""The README quick start, run command by command as a newcomer types it.

Substitutions, and only these: the install line is what made the dev venv this test runs in,
so it is not run again; the commands run in a scratch checkout (links to `.venv` and `tests`)
so `./dist` lands there; `HIAGENT_CONFIG` points at a runtime.toml that keeps data in the
scratch directory and installs dependencies offline from the test wheelhouse; the port is a
free one instead of 8000.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
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
    for name in (".venv", "tests"):
        (checkout / name).symlink_to(ROOT / name)
    port = free_port()
    config = write_config(tmp_path / "runtime.toml", tmp_path / "data", wheelhouse, port)
    env = {**os.environ, "HIAGENT_CONFIG": str(config), "HIAGENT_SERVER_PORT": str(port)}

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
                ["bash", "-c", localise(command)], cwd=checkout, env=env,
                capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
            )  # fmt: skip
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            outputs.append(done.stdout)
        ping, built, installed, metadata, ran, ps = outputs
        assert json.loads(ping) == {"message": "pong"}
        assert (checkout / built.strip()).is_file()
        assert json.loads(installed)["data"]["name"] == "hiagent-plugin-clock"
        assert json.loads(metadata)["data"][0]["name"] == "时间工具"
        assert json.loads(ran) == {"data": "2024-05-01T20:00:00+08:00", "error": None}
        assert "hiagent-plugin-clock" in ps
        assert httpx.get(f"http://127.0.0.1:{port}/docs").status_code == 200
    finally:
        os.killpg(server.pid, signal.SIGINT)  # Ctrl-C, as the README says
        code = server.wait(timeout=STOP_TIMEOUT_S)
        log.close()
    assert code == 0
