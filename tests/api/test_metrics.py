"""/metrics: requests by route template, tool calls by package and outcome, pool and queue state."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import httpx
import pytest

from hiagent_host.config import MAX_BUSY_POLL_US
from hiagent_host.rpc.busypoll import MIN_CPUS, usable_cpus
from tests.api.conftest import Installed
from tests.api.support import REQUEST_TIMEOUT_S, LiveServer, free_port, write_config

# Bounds a wait for a request to be counted (it is, as soon as its response is sent).
WAIT_S: Final = 10.0
# Tool calls made until one was polled for (the first nearly always is).
POLL_TRIES: Final = 20
ECHO: Final = {"pkg": "hiagent-plugin-echo", "version": "0.1.0", "plugin": "echo"}


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition (labels must all match)."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}\{{(.*)\}} (\S+)|{re.escape(name)} (\S+)", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match[1] or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match[2] or match[3])
    raise AssertionError(f"no sample {name} {labels}")


def scrape_once_counted(client: httpx.Client, samples: list[tuple[str, dict[str, str]]]) -> str:
    """/metrics once every sample in `samples` is there. A request is counted when its response
    has been sent, so a scrape sent right after the response may be served first."""
    deadline = time.monotonic() + WAIT_S
    while True:
        text = client.get("/metrics").text
        try:
            for name, labels in samples:
                sample(text, name, **labels)
            return text
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)  # polling the exposition, bounded by WAIT_S


def test_requests_are_counted_by_route_template_and_status(client: httpx.Client) -> None:
    client.post("/v1/GetPackageMetadata", json={"pkg": "absent-pkg", "version": "1"})
    client.post("/v1/NoSuchRoute/abc", json={})
    counted = ("hiagent_http_requests_total", {"route": "/v1/GetPackageMetadata", "status": "404"})
    unmatched = ("hiagent_http_requests_total", {"route": "<unmatched>", "status": "404"})
    timed = ("hiagent_http_request_duration_seconds_count", {"route": "/v1/GetPackageMetadata"})
    text = scrape_once_counted(client, [counted, unmatched, timed])
    for name, labels in (counted, unmatched, timed):
        assert sample(text, name, **labels) >= 1
    assert "NoSuchRoute" not in text


def test_tool_calls_are_counted_by_package_and_outcome(
    client: httpx.Client, installed: Installed
) -> None:
    client.post("/v1/RunPluginTool", json=ECHO | {"tool": "echo", "input": {"x": 1}})
    client.post("/v1/RunPluginTool", json=ECHO | {"tool": "no_such_tool"})
    client.post("/v1/RunPluginTool", json=ECHO | {"pkg": "made-up-name", "tool": "echo"})
    text = client.get("/metrics").text
    package = "hiagent-plugin-echo"
    assert sample(text, "hiagent_tool_calls_total", package=package, outcome="ok") >= 1
    assert sample(text, "hiagent_tool_calls_total", package=package, outcome="ToolNotFound") >= 1
    assert (
        sample(text, "hiagent_tool_calls_total", package="<unknown>", outcome="PackageNotFound")
        >= 1
    )
    assert "made-up-name" not in text
    assert sample(text, "hiagent_tool_call_duration_seconds_count", package=package) >= 1


def test_pool_queue_and_install_figures_are_exposed(
    client: httpx.Client, installed: Installed
) -> None:
    text = client.get("/metrics").text
    assert sample(text, "hiagent_pool_processes") >= 1
    assert sample(text, "hiagent_pool_process_starts_total") >= 1
    for name in ("hiagent_pool_process_crashes_total", "hiagent_pool_process_evictions_total",
                 "hiagent_pool_call_timeouts_total", "hiagent_pool_busy_processes"):  # fmt: skip
        sample(text, name)
    assert sample(text, "hiagent_queue_depth") >= 0
    assert sample(text, "hiagent_install_duration_seconds_count", outcome="ok") >= 1


@pytest.fixture(scope="module", params=[1, 2], ids=["one-worker", "two-workers"])
def polling_client(
    request: pytest.FixtureRequest, api_root: Path, wheelhouse: Path, installed: Installed
) -> Iterator[tuple[httpx.Client, int]]:
    """A server on the main one's data, with the largest busy-poll budget (every answer of a
    loopback echo comes within it, however busy the machine; the default is 200 µs), in one
    process or in forked worker processes; yields the client and the number of workers."""
    workers: int = request.param
    port = free_port()
    config = write_config(
        api_root / f"polling-{workers}.toml", api_root / "data", wheelhouse, port,
        server={"workers": workers}, pool={"busy_poll_us": MAX_BUSY_POLL_US},
    )  # fmt: skip
    live = LiveServer(config, port, api_root / f"polling-{workers}.log").start()
    try:
        # One connection: with several workers, the calls and /metrics reach the same one.
        with httpx.Client(base_url=live.url, timeout=REQUEST_TIMEOUT_S) as http:
            yield http, workers
    finally:
        live.stop()


def test_the_server_busy_polls_for_quick_answers_where_each_worker_has_two_cpus(
    polling_client: tuple[httpx.Client, int],
) -> None:
    client, workers = polling_client

    def polls() -> float:
        text = client.get("/metrics").text
        hits = sample(text, "hiagent_busy_poll_hits_total")
        return hits + sample(text, "hiagent_busy_poll_misses_total")

    can_poll = usable_cpus() / workers >= MIN_CPUS
    # A poll happens when the loop would sleep while an answer is due: nearly every call here,
    # but not one whose answer is back before the loop runs out of work.
    for n in range(POLL_TRIES):
        response = client.post("/v1/RunPluginTool", json=ECHO | {"tool": "echo"})
        assert response.json()["error"] is None, n
        if polls() > 0 or not can_poll:
            break
    pool = client.get("/v1/health").json()["data"]["pool"]
    assert pool["busy_poll_hits"] + pool["busy_poll_misses"] >= polls()
    if can_poll:
        assert polls() >= 1
    else:  # under two CPUs a worker: polling would only keep the others off them
        assert polls() == 0


def test_metrics_use_the_prometheus_text_format(client: httpx.Client) -> None:
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE hiagent_http_requests_total counter" in response.text
