"""The ASGI app: routes, the middleware stack, and a lifespan that owns packages, pool and jobs.

Stack, outermost first: Starlette's error guard → request context (request id, timing,
metrics, access log, last-resort 500) → bearer auth (only with keys configured) → router.
The lifespan recovers the package store, opens the pool and the job backend, and on shutdown
closes them in reverse (the pool stops every child through its ladder).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from hiagent_host import logs
from hiagent_host.api import openapi
from hiagent_host.api.auth import BearerAuthMiddleware
from hiagent_host.api.metrics import Metrics
from hiagent_host.api.middleware import RequestContextMiddleware
from hiagent_host.api.routes import OPERATIONS, starlette_routes
from hiagent_host.api.services import Services
from hiagent_host.config import Config, load_config, read_api_keys
from hiagent_host.jobs import make_backend
from hiagent_host.packages import PackageManager
from hiagent_host.pool import Pool

log = logging.getLogger("hiagent_host.app")

# Set by `serve` for Hypercorn worker processes (workers > 1), which build their own app.
WITH_WORKER_ENV: Final = "HIAGENT_SERVE_WITH_WORKER"

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


def create_app(
    config: Config,
    *,
    with_worker: bool | None = None,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The host's ASGI app for `config` (`extra_routes` is for benchmarks and tests)."""
    keys = read_api_keys(config)
    metrics = Metrics()
    middleware = [
        Middleware(
            RequestContextMiddleware, metrics=metrics, access_log_enabled=config.logging.access_log
        )
    ]
    if keys:
        middleware.append(Middleware(BearerAuthMiddleware, keys=keys))
    app = Starlette(
        routes=[*starlette_routes(OPERATIONS), *extra_routes],
        middleware=middleware,
        lifespan=_lifespan(config, metrics, with_worker),
    )
    app.state.openapi = openapi.encoded(OPERATIONS, secured=bool(keys))
    return app


def _lifespan(config: Config, metrics: Metrics, with_worker: bool | None) -> Lifespan:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        packages = PackageManager(config)
        await anyio.to_thread.run_sync(packages.recover)
        async with (
            Pool(config, packages) as pool,
            make_backend(config, packages, with_worker=with_worker) as jobs,
        ):
            metrics.watch_pool(pool.stats)
            app.state.services = Services(
                config=config, packages=packages, pool=pool, jobs=jobs, metrics=metrics
            )
            log.info("serving with %s", config.source)
            yield
            log.info("shutting down: stopping plugin processes")

    return lifespan


def app_from_environment() -> Starlette:
    """The app a Hypercorn worker process builds (config from `$HIAGENT_CONFIG`)."""
    raw = os.environ.get(WITH_WORKER_ENV)
    with_worker = None if raw is None else raw == "1"
    config = load_config()
    logs.configure(config.logging, keys=read_api_keys(config))
    return create_app(config, with_worker=with_worker)
