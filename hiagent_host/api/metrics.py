"""Prometheus metrics: HTTP requests, tool calls, installs, and the pool and queue as gauges.

Each app owns its registry (so tests and workers never share one). Request metrics are
labelled by the route template (`/v1/RunPluginTool`), never the raw path; unmatched paths share
one label. Pool and queue figures are read at scrape time by a custom collector: the pool does
not import prometheus.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
UNMATCHED: Final = "<unmatched>"
PREFIX: Final = "hiagent"

# Seconds; tool calls and installs are slower than plain requests.
REQUEST_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
)
INSTALL_BUCKETS: Final = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900)

# Pool statistics → (metric name, kind, help). Counters are cumulative in the pool.
POOL_FIELDS: Final = {
    "processes": ("pool_processes", "gauge", "Live plugin processes."),
    "busy": ("pool_busy_processes", "gauge", "Plugin processes with calls in flight."),
    "idle": ("pool_idle_processes", "gauge", "Plugin processes without calls in flight."),
    "starts": ("pool_process_starts", "counter", "Plugin processes started."),
    "crashes": ("pool_process_crashes", "counter", "Plugin processes that exited unexpectedly."),
    "evictions": ("pool_process_evictions", "counter", "Idle processes stopped to make room."),
    "timeouts": ("pool_call_timeouts", "counter", "Calls that passed their deadline."),
    "idle_stops": ("pool_idle_stops", "counter", "Processes stopped after idle_timeout_s."),
    "busy_poll_hits": (
        "busy_poll_hits",
        "counter",
        "Busy polls for a plugin's answer that ended with an event.",
    ),
    "busy_poll_misses": (
        "busy_poll_misses",
        "counter",
        "Busy polls that ran out of pool.busy_poll_us; the loop then slept.",
    ),
}


class _StateCollector(Collector):
    """Pool and queue figures, read when Prometheus scrapes."""

    def __init__(
        self,
        pool_stats: Callable[[], Any],
        queue_depth: Callable[[], int | None],
        sandbox: Callable[[], dict[str, Any] | None],
    ) -> None:
        self._pool_stats = pool_stats
        self._queue_depth = queue_depth
        self._sandbox = sandbox

    def collect(self) -> Iterator[Metric]:
        stats = self._pool_stats()
        if stats is not None:
            for field, (name, kind, help_text) in POOL_FIELDS.items():
                value = getattr(stats, field, None)
                if value is None:
                    continue
                family: Metric
                if kind == "counter":
                    family = CounterMetricFamily(f"{PREFIX}_{name}", help_text)
                else:
                    family = GaugeMetricFamily(f"{PREFIX}_{name}", help_text)
                family.add_metric([], float(value))
                yield family
        sandbox = self._sandbox()
        if sandbox is not None:
            family = GaugeMetricFamily(
                f"{PREFIX}_sandbox_active",
                "1 when plugin processes run sandboxed; `mode` is pool.sandbox.",
                labels=["mode"],
            )
            family.add_metric([str(sandbox["mode"])], 1.0 if sandbox["active"] else 0.0)
            yield family
        depth = self._queue_depth()
        if depth is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_queue_depth", "Install jobs waiting in the queue.", value=float(depth)
            )


class Metrics:
    """The app's instruments and the text exposition of its registry."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # `*_created`: noise
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "HTTP request latency (to the last byte) by route template and method.",
            ["route", "method"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.tool_calls = Counter(
            f"{PREFIX}_tool_calls",
            "Tool calls by package and outcome (ok, an error code, or disconnected).",
            ["package", "outcome"],
            registry=self.registry,
        )
        self.tool_seconds = Histogram(
            f"{PREFIX}_tool_call_duration_seconds",
            "Tool call latency by package.",
            ["package"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.install_seconds = Histogram(
            f"{PREFIX}_install_duration_seconds",
            "Package installs by outcome (ok or an error code).",
            ["outcome"],
            buckets=INSTALL_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth: int | None = None
        self._pool_stats: Callable[[], Any] = lambda: None
        # The labelled children, looked up once per label set: `labels()` locks and
        # validates on every call, which costs a tool call more than the count itself.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._tool_children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def watch_pool(
        self, stats: Callable[[], Any], sandbox: Callable[[], dict[str, Any] | None]
    ) -> None:
        """Report `stats()` (a PoolStats) and `sandbox()` (its mode, whether active) at every
        scrape."""
        self._pool_stats = stats
        self.registry.register(_StateCollector(self._read_pool, lambda: self.queue_depth, sandbox))

    def _read_pool(self) -> Any:
        return self._pool_stats()

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(route, method, str(status)),
                self.request_seconds.labels(route, method),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_tool_call(self, package: str, outcome: str, seconds: float) -> None:
        key = (package, outcome)
        children = self._tool_children.get(key)
        if children is None:
            children = (self.tool_calls.labels(package, outcome), self.tool_seconds.labels(package))
            self._tool_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_install(self, outcome: str, seconds: float) -> None:
        self.install_seconds.labels(outcome).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
