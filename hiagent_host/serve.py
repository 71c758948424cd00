"""Hypercorn serving the app: bind, workers, keep-alive and graceful shutdown from config.

SIGTERM or SIGINT: stop accepting, let in-flight calls and streams finish for up to
`server.graceful_shutdown_s` (then answer them 503 `ShuttingDown`, an SSE `error` event for a
stream, which cancels their calls in the children; see `api/shutdown.py`),
close the services (the pool's stop ladder for every child), and return 0. The services are
opened before Hypercorn binds: a start that fails (a bad store, a port in use) returns 1.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
from typing import Final, cast

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.run import run as hypercorn_run
from hypercorn.typing import ASGIFramework
from hypercorn.utils import wrap_app

from hiagent_host import logs
from hiagent_host.api.shutdown import ANSWER_MARGIN_S, Shutdown
from hiagent_host.app import (
    WITH_WORKER_ENV,
    ExtraRoutes,
    begin_drain,
    create_app,
    open_services,
)
from hiagent_host.config import CONFIG_ENV, Config, config_secrets, read_api_keys
from hiagent_host.errors import HostError
from hiagent_host.rpc.busypoll import loop_factory

log = logging.getLogger("hiagent_host.serve")

EXIT_START_FAILED: Final = 1

APP_FACTORY: Final = "hiagent_host.app:app_from_environment()"
LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def hypercorn_config(config: Config) -> HypercornConfig:
    server = config.server
    hc = HypercornConfig()
    host = f"[{server.host}]" if ":" in server.host else server.host
    hc.bind = [f"{host}:{server.port}"]
    hc.workers = server.workers
    hc.keep_alive_timeout = server.keep_alive_s
    # then the requests still running are answered ShuttingDown (api/shutdown.py)
    hc.graceful_timeout = server.graceful_shutdown_s + ANSWER_MARGIN_S
    hc.accesslog = None  # the app writes its own structured access log
    hc.errorlog = logging.getLogger("hypercorn.error")
    return hc


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warn_if_exposed(config: Config, keys: frozenset[str]) -> bool:
    """Log a loud warning when binding beyond loopback with no API keys; True if it did."""
    if keys or is_loopback(config.server.host):
        return False
    log.warning(
        "!!! binding %s:%s WITHOUT API KEYS: anyone who can reach this address can install "
        "packages and run code on this machine. Set [auth] api_keys (or api_keys_file) in "
        "%s, or bind 127.0.0.1. !!!",
        config.server.host,
        config.server.port,
        config.source,
    )
    return True


def serve(
    config: Config, *, with_worker: bool | None = None, extra_routes: ExtraRoutes = ()
) -> int:
    """Serve until SIGTERM/SIGINT; the exit status (0 after a clean shutdown, 1 if it cannot
    start). `extra_routes` (benchmarks) needs a single worker."""
    keys = read_api_keys(config)
    logs.configure(config.logging, keys=keys | config_secrets(config))
    warn_if_exposed(config, keys)
    hc = hypercorn_config(config)
    if config.server.workers > 1 and not extra_routes:
        return _serve_workers(config, hc, with_worker)
    hc.workers = 1
    try:
        sockets = hc.create_sockets()  # bind first: a taken port fails before anything starts
    except OSError as exc:
        log.error("cannot serve on %s: %s", hc.bind[0], exc)
        return EXIT_START_FAILED
    try:
        with asyncio.Runner(loop_factory=loop_factory(config.pool.busy_poll_us)) as runner:
            runner.run(_serve_one(config, hc, sockets, with_worker, extra_routes))
    except HostError as exc:
        log.error("cannot serve on %s: %s: %s", hc.bind[0], exc.code, exc.message)
        return EXIT_START_FAILED
    finally:
        for sock in (*sockets.insecure_sockets, *sockets.secure_sockets):
            sock.close()
    log.info("stopped")
    return 0


async def _serve_one(
    config: Config,
    hc: HypercornConfig,
    sockets: Sockets,
    with_worker: bool | None,
    extra_routes: ExtraRoutes,
) -> None:
    grace_s = config.server.graceful_shutdown_s
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("already shutting down (at most %.0f s for in-flight calls)", grace_s)
            return
        log.info(
            "%s: no new connections; draining in-flight calls for up to %.0f s",
            signal.Signals(signum).name,
            grace_s,
        )
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        async with open_services(config, with_worker=with_worker) as services:
            app = create_app(config, services=services, extra_routes=extra_routes)
            log.info("serving with %s", config.source)
            # In a task of its own: Hypercorn's shutdown leaves the task it ran in marked as
            # being cancelled, which would cancel the pool's clean shutdown right after.
            # what hypercorn.asyncio.serve does, with the sockets bound above
            asgi = wrap_app(cast(ASGIFramework, app), hc.wsgi_max_body_size, "asgi")

            async def shutdown_trigger() -> None:
                await stop.wait()
                shutdown: Shutdown = app.state.shutdown
                shutdown.begin(grace_s)  # calls still running at the end answer ShuttingDown
                begin_drain(app)

            await asyncio.create_task(
                worker_serve(asgi, hc, sockets=sockets, shutdown_trigger=shutdown_trigger)
            )
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _serve_workers(config: Config, hc: HypercornConfig, with_worker: bool | None) -> int:
    """Several Hypercorn worker processes, each with its own app and plugin pool."""
    if config.queue.backend == "local":
        log.warning(
            "server.workers = %d with the local queue backend: each worker keeps its own jobs; "
            'use [queue] backend = "redis" so every worker sees every job',
            config.server.workers,
        )
    if config.source != "<defaults>":
        os.environ[CONFIG_ENV] = config.source
    if with_worker is not None:
        os.environ[WITH_WORKER_ENV] = "1" if with_worker else "0"
    hc.application_path = APP_FACTORY
    return int(hypercorn_run(hc))
