"""Routes about the host itself: ping, health, processes, metrics, OpenAPI and the docs page."""

from __future__ import annotations

import time
from importlib.resources import files
from typing import Any, Final

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import Response

import hiagent_host
from hiagent_host.api import models, responses
from hiagent_host.api.endpoints import endpoint, services
from hiagent_host.api.metrics import CONTENT_TYPE
from hiagent_host.api.services import Services
from hiagent_host.errors import (
    CLUSTER_MISCONFIGURED,
    QUEUE_UNAVAILABLE,
    STORAGE_UNAVAILABLE,
    HostError,
)

PONG: Final = b'{"message":"pong"}'
# /v1/health must answer even when the queue backend hangs: its probe gets this long on top of
# the backend's own connect timeout.
HEALTH_PROBE_SLACK_S: Final = 1.0


async def ping(request: Request) -> Response:
    """Liveness: `{"message": "pong"}`, no envelope, no authentication."""
    return responses.JSONBody(PONG)


async def health(request: Request) -> Response:
    """`ok` (200) while serving; `degraded` (503, the health object in `error.data`) otherwise."""
    s = services(request)
    queue = await _queue_health(s)
    cluster = await s.cluster.report()
    stats = s.pool.stats()
    failure = _failure(queue, cluster)
    body = {
        "status": "ok" if failure is None else "degraded",
        "version": hiagent_host.__version__,
        "uptime_s": round(time.monotonic() - s.started_at, 3),
        "pool": msgspec.to_builtins(stats),
        "queue": queue,
        "sandbox": s.pool.sandbox.to_dict(),
        "cluster": cluster,
    }
    if failure is None:
        return responses.ok(body)
    code, reason = failure
    return responses.error(HostError(f"degraded: {reason}", code=code, http_status=503, data=body))


def _failure(queue: dict[str, Any], cluster: dict[str, Any]) -> tuple[str, str] | None:
    """What makes this node degraded (the first of: queue, cluster, store), if anything."""
    if not queue.get("ok", True):
        return QUEUE_UNAVAILABLE, queue.get("reason") or "the install queue is unavailable"
    if cluster["problems"]:
        return CLUSTER_MISCONFIGURED, "; ".join(cluster["problems"])
    store = cluster["store"]
    if not store.get("ok", True):
        return STORAGE_UNAVAILABLE, store.get("reason") or "the packages store is unavailable"
    return None


async def _queue_health(s: Services) -> dict[str, Any]:
    limit = s.config.queue.connect_timeout_s + HEALTH_PROBE_SLACK_S
    try:
        with anyio.fail_after(limit):
            found = await s.jobs.health()
    except TimeoutError:
        return {
            "backend": s.config.queue.backend,
            "ok": False,
            "reason": f"no answer within {limit} s",
        }
    except HostError as exc:
        return {
            "backend": s.config.queue.backend,
            "ok": False,
            "reason": f"{exc.code}: {exc.message}",
        }
    report: dict[str, Any] = msgspec.to_builtins(found)
    s.metrics.queue_depth = report.get("depth")
    return report


@endpoint(models.Empty)
async def list_processes(request: Request, s: Services, body: models.Empty) -> Any:
    """Every live plugin process (the pool's snapshot)."""
    node = s.cluster.node_id  # the pool's processes are this node's
    return [msgspec.structs.replace(p, node=node) for p in s.pool.snapshot()]


async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    s = services(request)
    await _queue_health(s)
    return Response(s.metrics.exposition(), media_type=CONTENT_TYPE)


async def openapi(request: Request) -> Response:
    document: bytes = request.app.state.openapi
    return responses.JSONBody(document)


async def docs(request: Request) -> Response:
    page = files("hiagent_host.api").joinpath("static", "docs.html").read_bytes()
    return Response(page, media_type="text/html; charset=utf-8")
