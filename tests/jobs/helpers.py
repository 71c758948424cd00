"""Helpers for the job tests: a real redis-server, a stalling find-links server, workers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import anyio

from hiagent_host.config import Config, load_config
from hiagent_host.jobs import JobBackend, JobInfo, JobStatus

REDIS_SERVER: Final = "redis-server"
# redis-server answers PING well within this on a loaded 2-core machine.
REDIS_START_TIMEOUT_S: Final = 15.0
# A stalled find-links request is released at the latest after this (uv gives up at 30 s).
STALL_MAX_S: Final = 25.0
# Polling interval of the bounded waits below.
POLL_S: Final = 0.02

ROOT: Final = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def redis_ping(port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A redis-server this test session owns: no persistence, its own port and directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart) on the same port; returns once it answers PING."""
        if self.proc is not None and self.proc.poll() is None:
            return
        log = (self.dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while not redis_ping(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start; see {self.dir / 'redis.log'}")
            time.sleep(POLL_S)

    def kill(self) -> None:
        """SIGKILL it (nothing persists: a restarted server starts empty)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=REDIS_START_TIMEOUT_S)

    def pause(self) -> None:
        """SIGSTOP: it still accepts connections (the kernel does) but never answers."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"FLUSHALL\r\n")
            if not s.recv(16).startswith(b"+OK"):
                raise RuntimeError("FLUSHALL failed")

    def stop(self) -> None:
        self.resume()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=REDIS_START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class StallServer:
    """A find-links page that answers only once `release()` is called.

    Installs configured with it stall in "installing dependencies" (the resolver waits for
    the page) until the test lets them go: a slow install that the test controls exactly.
    """

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.requested = threading.Event()
        stall = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stall.requested.set()
                stall.gate.wait(STALL_MAX_S)
                body = b"<!DOCTYPE html><html><body></body></html>"
                with contextlib.suppress(OSError):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Cache-Control", "no-store")
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/links/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def release(self) -> None:
        self.gate.set()

    def close(self) -> None:
        self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def write_config(
    path: Path,
    root: Path,
    *,
    wheelhouse: Path,
    find_links: list[str] | None = None,
    queue: dict[str, Any] | None = None,
) -> Config:
    """Write runtime.toml for data under `root` and load it the way the server does."""
    links = [str(wheelhouse), *(find_links or [])]
    lines = [
        "[paths]",
        f"extensions_dir = {json.dumps(str(root / 'extensions'))}",
        f"venvs_dir = {json.dumps(str(root / 'venvs'))}",
        f"state_dir = {json.dumps(str(root / 'state'))}",
        "[packages]",
        "no_index = true",
        f"find_links = {json.dumps(links)}",
        "[queue]",
        *(f"{key} = {json.dumps(value)}" for key, value in (queue or {}).items()),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_config(path, environ={}, use_lookup=False)


class WorkerProcess:
    """`hiagent-host worker` in a child process (its own session, so it is killed alone)."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.log_path = log_path
        log = log_path.open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("HIAGENT_")}
        env["PYTHONPATH"] = str(ROOT)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hiagent_host", "worker", "--config", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        log.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def sigkill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


# Upper bound of any one wait for a job to reach a state (a cold venv build included).
JOB_WAIT_S: Final = 60.0


async def wait_for(
    backend: JobBackend,
    job_id: str,
    until: Callable[[JobInfo], bool],
    *,
    timeout_s: float = JOB_WAIT_S,
    seen: list[JobInfo] | None = None,
) -> JobInfo:
    """Poll the job's status until `until` holds (bounded); `seen` collects every answer."""
    with anyio.fail_after(timeout_s):
        while True:
            info = await backend.status(job_id)
            if seen is not None:
                seen.append(info)
            if until(info):
                return info
            await anyio.sleep(POLL_S)


def ended(info: JobInfo) -> bool:
    return info.status.terminal


def stalled(info: JobInfo) -> bool:
    """Started and waiting on the StallServer (the resolver is running)."""
    return info.status is JobStatus.STARTED and info.phase == "installing dependencies"


def broken_wheel(directory: Path, name: str = "broken") -> Path:
    """A file with a valid wheel name that is not a zip at all."""
    path = directory / f"{name}-1.0-py3-none-any.whl"
    path.write_bytes(b"this is not a zip archive\n")
    return path


def leftovers(config: Config, dir_name: str) -> list[Path]:
    """What exists of package `dir_name` in extensions/ and venvs/ (nothing, if never
    installed or cleanly cancelled)."""
    found: list[Path] = []
    for root in (config.extensions_dir, config.venvs_dir):
        base = root / dir_name
        if base.exists():
            found += sorted(base.iterdir())
    return found
