"""Serving: config to Hypercorn, the exposure warning, and a graceful stop on SIGTERM/SIGINT."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec
import pytest

from hiagent_host.api.middleware import ANSWER_MARGIN_S
from hiagent_host.config import load_config
from hiagent_host.serve import hypercorn_config, is_loopback, warn_if_exposed
from tests.api.conftest import Installed
from tests.api.support import LiveServer, free_port, parse_sse, write_config

STREAM: Final = {"pkg": "hiagent-plugin-stream", "version": "0.1.0", "plugin": "stream"}
# Probes of a stopping server are bounded by this.
WAIT_S: Final = 30.0
# What the supervisor logs for each worker it starts.
STARTED: Final = re.compile(r"worker \d+ started \(pid (\d+)\)")
# server.graceful_shutdown_s of the servers these tests stop.
GRACE_S: Final = 2.0


def test_hypercorn_serves_the_bound_socket_with_keep_alive_and_grace_from_the_config(
    app_config: Path,
) -> None:
    config = load_config(app_config)
    server = msgspec.structs.replace(config.server, keep_alive_s=7.5)
    hc = hypercorn_config(msgspec.structs.replace(config, server=server), fd=7)
    assert hc.bind == ["fd://7"]
    grace = config.server.graceful_shutdown_s + ANSWER_MARGIN_S  # time to answer ShuttingDown
    assert (hc.keep_alive_timeout, hc.graceful_timeout) == (7.5, grace)
    assert hc.workers == 1  # serve() makes the worker processes itself
    assert hc.accesslog is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("example.org", False)],
)  # fmt: skip
def test_loopback_addresses_are_recognised(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("host", "keys", "warned"),
    [("0.0.0.0", frozenset(), True), ("0.0.0.0", frozenset({"k"}), False),
     ("127.0.0.1", frozenset(), False)],
)  # fmt: skip
def test_binding_beyond_loopback_without_keys_warns_loudly(
    app_config: Path,
    caplog: pytest.LogCaptureFixture,
    host: str,
    keys: frozenset[str],
    warned: bool,
) -> None:
    config = load_config(app_config)
    config = msgspec.structs.replace(
        config, server=msgspec.structs.replace(config.server, host=host)
    )
    with caplog.at_level(logging.WARNING, logger="hiagent_host.serve"):
        assert warn_if_exposed(config, keys) is warned
    assert any("WITHOUT API KEYS" in r.getMessage() for r in caplog.records) is warned


@pytest.fixture
def stopping_server(api_root: Path, wheelhouse: Path, installed: Installed, tmp_path: Path) -> Any:
    """A server of its own on the session's data directory (it is about to be stopped)."""
    port = free_port()
    config = write_config(
        tmp_path / "runtime.toml", api_root / "data", wheelhouse, port,
        server={"graceful_shutdown_s": GRACE_S},
    )  # fmt: skip
    live = LiveServer(config, port, tmp_path / "server.log").start()
    try:
        yield live
    finally:
        live.stop()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_drains_the_stream_in_flight_stops_children_and_exits_0(
    stopping_server: LiveServer, signum: int
) -> None:
    live = stopping_server
    pids = _child_pids(live)
    result: dict[str, Any] = {}
    first_item = threading.Event()

    def consume() -> None:
        call = STREAM | {"tool": "slow", "input": {"n": 5, "interval_s": 0.3}, "stream": True}
        with httpx.stream(
            "POST", f"{live.url}/v1/RunPluginTool", json=call, timeout=WAIT_S
        ) as response:
            chunks = []
            for chunk in response.iter_text():
                chunks.append(chunk)
                first_item.set()
            result["text"] = "".join(chunks)

    reader = threading.Thread(target=consume)
    reader.start()
    assert first_item.wait(WAIT_S)
    pids |= _child_pids(live)
    live.signal(signum)
    _wait_refused(live)
    reader.join(WAIT_S)
    assert parse_sse(result["text"])[-1] == {"event": "done", "data": "{}"}
    assert live.wait() == 0
    for pid in pids:
        assert not _alive(pid), f"plugin process {pid} outlived the server"


def test_a_stream_longer_than_the_grace_period_ends_with_a_shutting_down_event(
    stopping_server: LiveServer,
) -> None:
    live = stopping_server
    call = STREAM | {"tool": "slow", "input": {"n": 100000, "interval_s": 0.05}, "stream": True}
    with httpx.stream(
        "POST", f"{live.url}/v1/RunPluginTool", json=call, timeout=WAIT_S
    ) as response:
        lines = response.iter_lines()
        assert next(lines) == "data: 0"
        live.signal(signal.SIGTERM)
        rest = "\n".join(_until_cut(lines))
    last = parse_sse(rest + "\n\n")[-1]
    assert last["event"] == "error"
    assert json.loads(last["data"])["code"] == "ShuttingDown"
    assert json.loads(last["data"])["http_code"] == 503
    assert live.wait() == 0


def test_a_call_still_running_when_the_grace_period_ends_gets_503_shutting_down(
    stopping_server: LiveServer,
) -> None:
    live = stopping_server
    result: dict[str, httpx.Response] = {}
    call = {"pkg": "hiagent-plugin-hang", "version": "0.1.0", "plugin": "hang",
            "tool": "sleep_async", "input": {"seconds": 3600}}  # fmt: skip

    def run() -> None:
        result["answer"] = httpx.post(f"{live.url}/v1/RunPluginTool", json=call, timeout=WAIT_S)

    caller = threading.Thread(target=run)
    caller.start()
    _wait_in_flight(live, "hiagent-plugin-hang")
    live.signal(signal.SIGTERM)
    caller.join(WAIT_S)
    answer = result["answer"]
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "ShuttingDown"
    assert answer.json()["error"]["http_code"] == 503
    assert live.wait() == 0


def _wait_in_flight(live: LiveServer, package: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        processes = httpx.post(f"{live.url}/v1/ListProcesses", json={}, timeout=WAIT_S).json()
        if any(p["pkg"] == package and p["calls_in_flight"] for p in processes["data"]):
            return
        time.sleep(0.02)  # polling the pool, bounded by WAIT_S
    pytest.fail(f"no call of {package} came in flight")


def test_several_workers_share_the_port_a_dead_one_is_replaced_and_a_stop_ends_them_all(
    api_root: Path, wheelhouse: Path, installed: Installed, tmp_path: Path
) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "runtime.toml", api_root / "data", wheelhouse, port,
        server={"workers": 2, "graceful_shutdown_s": GRACE_S},
    )  # fmt: skip
    live = LiveServer(config, port, tmp_path / "server.log").start()
    try:
        first = _wait_workers(live, 2)
        call = {"pkg": "hiagent-plugin-echo", "version": "0.1.0", "plugin": "echo",
                "tool": "echo", "input": {"x": 1}}  # fmt: skip
        answer = httpx.post(f"{live.url}/v1/RunPluginTool", json=call, timeout=WAIT_S).json()
        assert answer["data"] == {"x": 1}
        os.kill(first[0], signal.SIGKILL)
        workers = _wait_workers(live, 3)  # the supervisor started another
        assert workers[:2] == first
        live.wait_ready()
        live.signal(signal.SIGTERM)
        assert live.wait() == 0
    finally:
        live.stop()
    for pid in workers:
        assert not _alive(pid), f"worker {pid} outlived the server"


def _wait_workers(live: LiveServer, count: int) -> list[int]:
    """The pids of the first `count` workers the supervisor logged as started."""
    deadline = time.monotonic() + WAIT_S
    while len(pids := [int(m[1]) for m in STARTED.finditer(live.log())]) < count:
        assert time.monotonic() < deadline, live.log()
        time.sleep(0.02)  # polling the log file, bounded by WAIT_S
    return pids[:count]


def _until_cut(lines: Any) -> Any:
    try:
        yield from lines
    except httpx.TransportError:
        return


def _child_pids(live: LiveServer) -> set[int]:
    processes = httpx.post(f"{live.url}/v1/ListProcesses", json={}, timeout=WAIT_S).json()["data"]
    return {p["pid"] for p in processes if p["pid"]}


def _wait_refused(live: LiveServer) -> None:
    """The listening socket goes away while the stream is still being served."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{live.url}/ping", timeout=1.0)
        except httpx.TransportError:
            return
        time.sleep(0.02)  # polling the port, bounded by WAIT_S
    pytest.fail("the server kept accepting connections after the stop signal")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie not yet reaped by its (gone) parent is not alive
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_every_request_gets_one_structured_access_log_line(
    client: httpx.Client, server: LiveServer, installed: Installed
) -> None:
    call = {"pkg": "hiagent-plugin-echo", "version": "0.1.0", "plugin": "echo", "tool": "echo",
            "input": {"x": 1}}  # fmt: skip
    client.post("/v1/RunPluginTool", json=call, headers={"X-Request-ID": "access-log-1"})
    deadline = time.monotonic() + WAIT_S
    while not (lines := [r for r in server.log_records() if r.get("request_id") == "access-log-1"]):
        assert time.monotonic() < deadline
        time.sleep(0.02)  # polling the log file, bounded by WAIT_S
    [line] = lines
    assert line["logger"] == "hiagent_host.access"
    assert line["method"] == "POST"
    assert line["path"] == "/v1/RunPluginTool"
    assert line["status"] == 200
    assert line["duration_s"] >= 0
    assert (line["pkg"], line["plugin"], line["tool"]) == ("hiagent-plugin-echo", "echo", "echo")
