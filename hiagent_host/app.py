"""The ASGI app: routes, the middleware stack, and the services behind them.

Stack, outermost first: Starlette's error guard → one middleware for everything around a
request (api/middleware.py: request id, timing, API keys, keep-alive after an early answer, the
end of a graceful shutdown, last-resort 500, metrics, access log) → router (/v1 and the rest
from api/routes.py, and /mcp, the MCP endpoint, unless `mcp.enabled` is off).
`open_services` recovers the package store, opens the pool, the cluster node (changes made
by other nodes, see docs/scale-out.md) and the job backend, builds the base venv in the
background, and closes them in reverse (the pool stops every child through its ladder).
`serve` opens them itself, before Hypercorn serves, so a failed start is an error and not a
server without services; otherwise (tests) the app's lifespan does. The lifespan also runs the
MCP endpoint's session manager, inside the services either way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Final

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from hiagent_host import logs
from hiagent_host.api import openapi
from hiagent_host.api.mcp import McpEndpoint
from hiagent_host.api.metrics import Metrics
from hiagent_host.api.middleware import RequestMiddleware, Shutdown
from hiagent_host.api.routes import OPERATIONS, public_paths, starlette_routes
from hiagent_host.api.services import Services
from hiagent_host.cluster import ClusterNode, coordinator_for, new_node_id
from hiagent_host.config import Config, read_api_keys
from hiagent_host.errors import HostError
from hiagent_host.jobs import make_backend
from hiagent_host.packages import PackageManager
from hiagent_host.pool import Pool

log = logging.getLogger("hiagent_host.app")

# The Model Context Protocol endpoint (docs/mcp.md).
MCP_PATH: Final = "/mcp"

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]
ExtraRoutes = Sequence[BaseRoute]


def create_app(
    config: Config,
    *,
    services: Services | None = None,
    with_worker: bool | None = None,
    extra_routes: ExtraRoutes = (),
) -> Starlette:
    """The host's ASGI app for `config`.

    With `services` (opened by the caller, as `serve` does) the app uses them; without, its
    lifespan opens and closes its own. `extra_routes` is for benchmarks and tests.
    """
    keys = read_api_keys(config)
    metrics = services.metrics if services is not None else Metrics()
    shutdown = Shutdown()
    middleware = [
        Middleware(
            RequestMiddleware,
            metrics=metrics,
            shutdown=shutdown,
            access_log_enabled=config.logging.access_log,
            keys=keys,
            public=public_paths(OPERATIONS),
        )
    ]
    mcp = McpEndpoint(config) if config.mcp.enabled else None
    routes: list[BaseRoute] = [*starlette_routes(OPERATIONS), *extra_routes]
    if mcp is not None:
        routes.append(Route(MCP_PATH, mcp, include_in_schema=False))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=_lifespan(config, metrics, with_worker, services, mcp),
    )
    app.state.openapi = openapi.encoded(OPERATIONS, secured=bool(keys))
    app.state.shutdown = shutdown  # serve() starts it on SIGTERM/SIGINT
    app.state.mcp = mcp
    if services is not None:
        app.state.services = services
    return app


@asynccontextmanager
async def open_services(
    config: Config, *, metrics: Metrics | None = None, with_worker: bool | None = None
) -> AsyncIterator[Services]:
    """Recover the package store, open the pool and the job backend; close them in reverse."""
    metrics = metrics or Metrics()
    node_id = new_node_id()
    packages = PackageManager(
        config, coordinator=coordinator_for(config, node_id), load_on_demand=False
    )
    await anyio.to_thread.run_sync(packages.recover)
    async with (
        Pool(config, packages) as pool,
        ClusterNode(config, packages, node_id=node_id, role="api") as cluster,
        make_backend(config, packages, with_worker=with_worker) as jobs,
        anyio.create_task_group() as background,
    ):
        cancel = threading.Event()
        background.start_soon(_warm_base, packages, cancel)
        try:
            metrics.watch_pool(pool.stats, pool.sandbox.to_dict)
            yield Services(
                config=config,
                packages=packages,
                pool=pool,
                jobs=jobs,
                metrics=metrics,
                cluster=cluster,
                redact=logs.Redactor(read_api_keys(config)),
            )
            log.info("stopping plugin processes")
        finally:
            cancel.set()  # a base build still running stops (its subprocess is killed)


async def _warm_base(packages: PackageManager, cancel: threading.Event) -> None:
    """Build the base venv in the background, so the first install need not (see
    packages/base_venv.py); a failure here is only logged: each install tries again."""
    try:
        if await anyio.to_thread.run_sync(packages.warm_base, cancel):
            log.info("the base venv is ready")
    except HostError as exc:
        if not cancel.is_set():
            log.warning("cannot build the base venv now (%s: %s)", exc.code, exc.message)


def _lifespan(
    config: Config,
    metrics: Metrics,
    with_worker: bool | None,
    given: Services | None,
    mcp: McpEndpoint | None,
) -> Lifespan:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            services = given
            if services is None:
                services = await stack.enter_async_context(
                    open_services(config, metrics=metrics, with_worker=with_worker)
                )
                app.state.services = services
            if mcp is not None:
                await stack.enter_async_context(mcp.run(services))
            yield

    return lifespan


def begin_drain(app: Starlette) -> None:
    """The server stops taking connections: end the streams that would otherwise hold its
    graceful shutdown open to the end (MCP's notification streams)."""
    mcp: McpEndpoint | None = app.state.mcp
    if mcp is not None:
        mcp.drain()
