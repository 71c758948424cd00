"""`hiagent-host worker` and `hiagent-host install-async` against a real server on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import anyio
import pytest

from hiagent_host import cli
from tests.jobs.helpers import ROOT, StallServer, free_port, write_config

# The server answers /ping within this after its start (imports, recovery, app start-up).
SERVER_START_S = 60.0
# install-async prints a line, or ends, within this while the test waits on it.
CLI_LINE_S = 60.0


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIAGENT_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


class Server:
    """`hiagent-host serve` in a child process."""

    def __init__(self, config_path: Path, port: int, log_path: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hiagent_host", "serve", "--config", str(config_path),
                 "--port", str(port)],
                stdout=log, stderr=subprocess.STDOUT, env=child_env(), cwd=ROOT,
                start_new_session=True,
            )  # fmt: skip

    def ping(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def call(self, route: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            f"{self.url}/v1/{route}", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)["data"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def server(tmp_path: Path, wheelhouse: Path, stall: StallServer) -> Iterator[Server]:
    config = write_config(
        tmp_path / "runtime.toml", tmp_path, wheelhouse=wheelhouse, find_links=[stall.url],
        queue={"backend": "local"},
    )  # fmt: skip
    server = Server(Path(config.source), free_port(), tmp_path / "server.log")
    try:
        yield server
    finally:
        server.stop()


async def wait_ready(server: Server) -> None:
    with anyio.fail_after(SERVER_START_S):
        while not await anyio.to_thread.run_sync(server.ping):
            if server.proc.poll() is not None:
                pytest.fail(f"the server exited:\n{server.log_path.read_text()}")
            await anyio.sleep(0.1)


def start_install_async(
    server: Server, wheel: Path, config: Path, *extra: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hiagent_host", "install-async", str(wheel), "--config",
         str(config), "--server", server.url, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(), cwd=ROOT,
    )  # fmt: skip


async def read_until(stream: IO[str], needle: str) -> list[str]:
    """Lines of `stream` up to and including the first that contains `needle`."""
    lines: list[str] = []
    with anyio.fail_after(CLI_LINE_S):
        while True:
            line = await anyio.to_thread.run_sync(stream.readline)
            if not line:
                pytest.fail(f"output ended before {needle!r}: {lines}")
            lines.append(line.rstrip("\n"))
            if needle in line:
                return lines


def test_the_worker_command_needs_the_redis_backend(
    tmp_path: Path, wheelhouse: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "runtime.toml", tmp_path, wheelhouse=wheelhouse)
    code = cli.main(["--config", config.source, "worker"])
    assert code == 2
    assert 'backend = "redis"' in capsys.readouterr().err


@pytest.mark.anyio
@pytest.mark.parametrize("as_json", [False, True])
async def test_install_async_shows_the_phase_until_the_job_finishes_then_prints_the_record(
    server: Server,
    built_wheels: dict[str, Path],
    stall: StallServer,
    tmp_path: Path,
    as_json: bool,
) -> None:
    wheel = built_wheels["pkg_nodeps"]
    await wait_ready(server)
    extra = ["--json"] if as_json else []
    process = start_install_async(server, wheel, tmp_path / "runtime.toml", *extra)
    try:
        assert process.stderr is not None
        shown = await read_until(process.stderr, "started: installing dependencies")
        stall.release()
        with anyio.fail_after(CLI_LINE_S):
            out, err = await anyio.to_thread.run_sync(process.communicate)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert shown[0].startswith("job ")
    assert "finished" in err
    if as_json:
        record = json.loads(out)
        assert (record["name"], record["uri"], record["filename"]) == (
            "pkg-nodeps", wheel.as_uri(), wheel.name,
        )  # fmt: skip
        assert record["venv_path"]
    else:  # the same readable record as `hiagent-host install`
        assert out.splitlines()[0] == "pkg-nodeps 1.0.0"
        assert f"  from:         {wheel.as_uri()}" in out.splitlines()


@pytest.mark.anyio
async def test_ctrl_c_in_install_async_cancels_the_job(
    server: Server, built_wheels: dict[str, Path], tmp_path: Path
) -> None:
    wheel = built_wheels["pkg_nodeps"]
    await wait_ready(server)
    process = start_install_async(server, wheel, tmp_path / "runtime.toml")
    try:
        assert process.stderr is not None
        shown = await read_until(process.stderr, "started: installing dependencies")
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(CLI_LINE_S):
            _, err = await anyio.to_thread.run_sync(process.communicate)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    job_id = shown[0].split()[1]
    status = await anyio.to_thread.run_sync(
        server.call, "GetInstallPackageAsyncStatus", {"job_id": job_id}
    )
    assert process.returncode == 130, err
    assert status["status"] == "stopped"
    assert status["reason"].startswith("Cancelled: ")
