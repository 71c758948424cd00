"""Helpers for the API tests: a real server in a subprocess, its config, a loopback wheel server."""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import httpx

ROOT: Final = Path(__file__).resolve().parents[2]
# A fresh server answers /ping within a second or two; generous for a loaded CI machine.
START_TIMEOUT_S: Final = 60.0
# SIGTERM → exit: the drain (graceful_shutdown_s in the test config) plus the pool's ladder.
STOP_TIMEOUT_S: Final = 30.0
# How often a readiness probe is retried while waiting for a server to come up.
PROBE_INTERVAL_S: Final = 0.05
# Each HTTP request of a test; installs build a venv and may take longer.
REQUEST_TIMEOUT_S: Final = 60.0
# How long `LiveServer.log` waits for the server to answer its marker and to log it.
SETTLE_S: Final = 10.0
_MARKERS = itertools.count(1)
INSTALL_TIMEOUT_S: Final = 180.0
# Bound for a served HTTP request in the loopback wheel server.
WHEEL_SERVER_POLL_S: Final = 0.05


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(
    path: Path, data_root: Path, wheelhouse: Path, port: int, **sections: Mapping[str, Any]
) -> Path:
    """A runtime.toml for a test server: data under `data_root`, installs offline."""
    settings: dict[str, dict[str, Any]] = {
        "server": {
            "host": "127.0.0.1",
            "port": port,
            "graceful_shutdown_s": 5.0,
            "max_body_bytes": 1024 * 1024,
            "sse_keepalive_s": 0.3,
        },
        "paths": {
            "extensions_dir": str(data_root / "extensions"),
            "venvs_dir": str(data_root / "venvs"),
            "state_dir": str(data_root / "state"),
        },
        "packages": {"no_index": True, "find_links": [str(wheelhouse)]},
        "pool": {"call_timeout_s": 20.0, "max_call_timeout_s": 60.0, "cancel_grace_s": 1.0},
        "logging": {"level": "info", "json": True},
    }
    for section, values in sections.items():
        settings.setdefault(section, {}).update(values)
    lines: list[str] = []
    for section, values in settings.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def serve_command(config: Path, port: int) -> list[str]:
    """`hiagent-host serve` as a newcomer runs it (`python -m hiagent_host` is the same)."""
    return [
        sys.executable,
        "-m",
        "hiagent_host",
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
    ]


class LiveServer:
    """`hiagent-host serve` in a subprocess on a loopback port, its output in a log file."""

    def __init__(self, config: Path, port: int, log_path: Path, env: Mapping[str, str] = {}):
        self.config = config
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._env = {**os.environ, **env}
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return serve_command(self.config, self.port)

    def start(self) -> LiveServer:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        """Wait (bounded) until /ping answers; fail with the log if the server died."""
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    if client.get(f"{self.url}/ping").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(PROBE_INTERVAL_S)  # a bounded probe loop, not synchronisation
        raise RuntimeError(f"server did not answer /ping within {START_TIMEOUT_S} s:\n{self.log()}")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def stop(self) -> int | None:
        """SIGTERM and wait; SIGKILL the group if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise

    def log(self) -> str:
        """The server's log: while it runs, with every line it logged before this call.

        The server writes the lines logged on its event loop in batches (every 20 ms), so a
        marker request is sent and its access-log line awaited: lines leave in order, so once
        it is there, so is everything logged before it.
        """
        if self.proc is not None and self.proc.poll() is None:
            self._settle()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def _settle(self) -> None:
        marker = f"log-marker-{next(_MARKERS)}"
        try:
            httpx.get(f"{self.url}/ping", headers={"X-Request-ID": marker}, timeout=SETTLE_S)
        except httpx.TransportError:
            return  # not answering (starting or stopping): what it wrote is all there is
        deadline = time.monotonic() + SETTLE_S
        while marker not in self.log_path.read_text(encoding="utf-8", errors="replace"):
            if time.monotonic() > deadline:
                raise AssertionError(f"the marker {marker} never reached the server's log")
            time.sleep(PROBE_INTERVAL_S)  # a bounded probe of the log file

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines (the test config logs JSON); other lines are skipped."""
        records = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    records.append(value)
        return records


class WheelServer:
    """A loopback HTTP server for a directory of wheels (the `http://` install source);
    with `basic_auth` it answers 401 to a request without those credentials."""

    def __init__(self, directory: Path, basic_auth: tuple[str, str] | None = None) -> None:
        expected = None
        if basic_auth is not None:
            token = base64.b64encode(":".join(basic_auth).encode()).decode()
            expected = f"Basic {token}"
        handler = functools.partial(_QuietHandler, expected, directory=str(directory))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(WHEEL_SERVER_POLL_S,), daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, expected_auth: str | None, *args: Any, **kwargs: Any) -> None:
        self.expected_auth = expected_auth
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        if self.expected_auth and self.headers.get("Authorization") != self.expected_auth:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="wheels"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def envelope_error(response: httpx.Response) -> dict[str, Any]:
    """The error object of an envelope response, checked for shape and status."""
    body = response.json()
    assert body["data"] is None, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "data", "http_code"}, error
    assert error["http_code"] == response.status_code, (error, response.status_code)
    return error


def parse_sse(text: str) -> list[dict[str, Any]]:
    """SSE text → events ({"event", "data", "id", "retry"}); data lines joined, comments dropped."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in text.split("\n"):
        if line == "":
            if current:
                events.append(current)
                current = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(": ")
            current[field] = current[field] + "\n" + value if field in current else value
    return events


@contextlib.contextmanager
def wheel_server(directory: Path) -> Iterator[WheelServer]:
    server = WheelServer(directory)
    try:
        yield server
    finally:
        server.close()
