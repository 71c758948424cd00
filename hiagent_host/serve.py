"""Hypercorn serving the app: bind, worker processes, keep-alive and graceful shutdown.

The listening socket is bound first (a port in use fails before anything starts, exit 1).
With `server.workers` = 1 this process serves; with more, it forks that many worker processes
that share the socket (the kernel hands each new connection to one of them) and supervises
them. Each serving process opens its own services (package store, plugin pool, job backend)
before it serves, runs its event loop (`server.event_loop`: uvloop, else asyncio's) and
serves through Hypercorn's public `hypercorn.asyncio.serve`, the socket given as `fd://N`.

SIGTERM or SIGINT: stop accepting, let in-flight calls and streams finish for up to
`server.graceful_shutdown_s` (then answer them 503 `ShuttingDown`, an SSE `error` event for a
stream, which cancels their calls in the children; see `api/middleware.py`), close the services
(the pool's stop ladder for every child), and return 0. The supervisor
passes the signal on to its workers and waits for them; a worker that dies on its own is
started again, after `WORKER_RESTART_DELAY_S`; one that cannot start stops them all (exit 1).
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Final

import msgspec
import uvloop
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig

from hiagent_host import logs
from hiagent_host.api.middleware import ANSWER_MARGIN_S, Shutdown
from hiagent_host.app import ExtraRoutes, begin_drain, create_app, open_services
from hiagent_host.cli_exit import EXIT_FAILED
from hiagent_host.config import Config, config_secrets, read_api_keys
from hiagent_host.errors import HostError
from hiagent_host.rpc import MIN_CPUS, usable_cpus

log = logging.getLogger("hiagent_host.serve")

LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
STOP_SIGNALS: Final = frozenset({signal.SIGTERM, signal.SIGINT})
# A worker that died on its own is started again after this long (a crash loop stays slow).
WORKER_RESTART_DELAY_S: Final = 1.0
# A stopping worker that has not exited this long after its grace period is killed (its
# plugin processes' stop ladder takes a few seconds at most).
WORKER_STOP_MARGIN_S: Final = 30.0
# How often a stopping supervisor looks for workers that have exited.
WORKER_POLL_S: Final = 0.05
# Connections the kernel queues before the workers accept them: a burst of new connections
# (clients reconnecting at once) waits rather than being refused.
LISTEN_BACKLOG: Final = 1024


def hypercorn_config(config: Config, fd: int) -> HypercornConfig:
    """Hypercorn's settings for one serving process on the bound socket `fd`."""
    server = config.server
    hc = HypercornConfig()
    hc.bind = [f"fd://{fd}"]
    hc.keep_alive_timeout = server.keep_alive_s
    # then the requests still running are answered ShuttingDown (api/middleware.py)
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


def bind(config: Config) -> socket.socket:
    """The listening socket of `[server] host` and `port` (OSError if it cannot be had)."""
    host = config.server.host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, config.server.port), family=family, backlog=LISTEN_BACKLOG)


def loop_factory(config: Config) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes a serving process's event loop (`server.event_loop`)."""
    if config.server.event_loop == "uvloop":
        return uvloop.new_event_loop
    return asyncio.new_event_loop


def serve(
    config: Config, *, with_worker: bool | None = None, extra_routes: ExtraRoutes = ()
) -> int:
    """Serve until SIGTERM/SIGINT; the exit status (0 after a clean shutdown, 1 if it cannot
    start). `extra_routes` (benchmarks) are served by every worker."""
    keys = read_api_keys(config)
    logs.configure(config.logging, keys=keys | config_secrets(config))
    warn_if_exposed(config, keys)
    where = f"{config.server.host}:{config.server.port}"
    try:
        sock = bind(config)  # bind first: a taken port fails before anything starts
    except OSError as exc:
        log.error("cannot serve on %s: %s", where, exc)
        return EXIT_FAILED
    with sock:
        if config.server.workers > 1:
            return _supervise(_share_cpus(config), sock, with_worker, extra_routes)
        return _serve_process(config, sock, with_worker, extra_routes)


def _serve_process(
    config: Config, sock: socket.socket, with_worker: bool | None, extra_routes: ExtraRoutes
) -> int:
    """Serve on `sock` in this process until SIGTERM/SIGINT; the exit status."""
    try:
        with asyncio.Runner(loop_factory=loop_factory(config)) as runner:
            runner.run(_serve_one(config, sock, with_worker, extra_routes))
    except HostError as exc:
        log.error("cannot serve: %s: %s", exc.code, exc.message)
        return EXIT_FAILED
    log.info("stopped")
    return 0


async def _serve_one(
    config: Config, sock: socket.socket, with_worker: bool | None, extra_routes: ExtraRoutes
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

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        async with open_services(config, with_worker=with_worker) as services:
            app = create_app(config, services=services, extra_routes=extra_routes)
            # What start-up made (modules, the app, the services: about 120 000 objects) lives
            # as long as the process: out of the collector's sight, a full collection takes
            # well under a millisecond instead of some 70 ms in the middle of requests.
            gc.freeze()
            log.info("serving on %s:%s with %s", *sock.getsockname()[:2], config.source)
            # Hypercorn takes the socket over, and closes it as it stops accepting.
            hc = hypercorn_config(config, sock.detach())

            async def shutdown_trigger() -> None:
                await stop.wait()
                shutdown: Shutdown = app.state.shutdown
                shutdown.begin(grace_s)  # calls still running at the end answer ShuttingDown
                begin_drain(app)

            # In a task of its own: Hypercorn's shutdown leaves the task it ran in marked as
            # being cancelled, which would cancel the pool's clean shutdown right after.
            await asyncio.create_task(hypercorn_serve(app, hc, shutdown_trigger=shutdown_trigger))  # type: ignore[arg-type]
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


def _share_cpus(config: Config) -> Config:
    """`config` for workers that share the CPUs: without busy polling when each worker has
    fewer than two CPUs of its own (its polling would keep the others, and the plugin
    processes, off the CPUs they need; bench/http.py measured 10 % more CPU per request)."""
    cpus = usable_cpus()
    if config.pool.busy_poll_us == 0 or cpus / config.server.workers >= MIN_CPUS:
        return config
    log.info(
        "busy polling for answers is off: %d workers share %g CPUs", config.server.workers, cpus
    )
    pool = msgspec.structs.replace(config.pool, busy_poll_us=0)
    return msgspec.structs.replace(config, pool=pool)


def _supervise(
    config: Config, sock: socket.socket, with_worker: bool | None, extra_routes: ExtraRoutes
) -> int:
    """Fork `server.workers` serving processes on `sock` and look after them until they all
    stop (see the module docstring); the exit status."""
    stopping = False
    failed = False
    workers: dict[int, int] = {}  # pid → worker number
    # Workers drain for graceful_shutdown_s, answer what is left, then stop their plugins.
    stop_wait_s = config.server.graceful_shutdown_s + ANSWER_MARGIN_S + WORKER_STOP_MARGIN_S
    kill_at = math.inf

    def start(number: int) -> None:
        # Signals wait until the new worker has dropped the supervisor's handler.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:  # the worker: serve, then leave without running the parent's exit code
            status = EXIT_FAILED
            try:
                for signum in STOP_SIGNALS:
                    signal.signal(signum, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
                status = _serve_process(config, sock, with_worker, extra_routes)
            finally:
                logging.shutdown()
                os._exit(status)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        workers[pid] = number
        log.info("worker %d started (pid %d)", number, pid)

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping, kill_at
        if not stopping:
            kill_at = time.monotonic() + stop_wait_s
        stopping = True
        sock.close()  # the workers close theirs as they stop accepting
        for pid in workers:
            _signal(pid, signal.SIGTERM)

    if config.queue.backend == "local":
        log.info("server.workers = %d: every worker sees every job (shared state_dir/jobs)",
                 config.server.workers)  # fmt: skip
    previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
    try:
        for number in range(config.server.workers):
            start(number)
        while workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG if stopping else 0)
            except ChildProcessError:
                break
            if pid == 0:  # stopping, and no worker has exited yet
                if time.monotonic() >= kill_at:
                    log.error("workers still running %.0f s after the stop; killing", stop_wait_s)
                    for pid in workers:
                        _signal(pid, signal.SIGKILL)
                    kill_at = math.inf
                time.sleep(WORKER_POLL_S)  # a bounded poll: the deadline above ends it
                continue
            if pid not in workers:
                continue
            number = workers.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            if stopping:
                continue
            if code == EXIT_FAILED:
                log.error("worker %d could not start; stopping the others", number)
                failed = True
                on_signal(signal.SIGTERM, None)
                continue
            log.error("worker %d (pid %d) exited (%d); starting it again", number, pid, code)
            time.sleep(WORKER_RESTART_DELAY_S)  # the supervisor has nothing else to do
            if not stopping:
                start(number)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("stopped")
    return EXIT_FAILED if failed else 0


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # it has just exited; the wait loop reaps it
