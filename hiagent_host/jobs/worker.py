"""The arq worker: runs queued installs, survives Redis restarts, stops gracefully.

`run_worker` is `hiagent-host worker`; `serve_queue` is the same loop without signal
handling, which `serve --with-worker` runs inside the server. Semantics (docs/queue.md):
- a job runs at most `queue.worker_concurrency` at a time per worker, `queue.job_timeout_s`
  each (then it fails); its result is kept `queue.result_ttl_s`;
- SIGTERM/SIGINT: running installs are cancelled (subprocess killed, nothing half-installed)
  and go back to the queue for another worker (or this one after a restart);
- a worker that dies (SIGKILL, power loss) leaves arq's in-progress key behind; when it
  expires (`job_timeout_s` + 15 s after the start) any worker runs the job again. A job gets
  `MAX_TRIES` starts in all, then fails with reason "Interrupted: …".
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import anyio.abc
import anyio.to_thread
import msgspec
from arq.connections import ArqRedis
from arq.worker import Worker, func
from redis.exceptions import RedisError

from hiagent_host.config import Config, redact_url
from hiagent_host.errors import CANCELLED, INTERNAL_ERROR
from hiagent_host.jobs import codec, keys
from hiagent_host.jobs.connection import Commands, close, connect
from hiagent_host.jobs.install_run import SETTLE_S, run_install
from hiagent_host.jobs.model import Installer, JobSpec, JobStatus, Outcome, Step
from hiagent_host.packages import PackageManager

log = logging.getLogger(__name__)

# Starts a job gets in all: the first, plus re-runs after its worker was stopped or died.
MAX_TRIES: Final = 3
# arq's own timeout for the job function: job_timeout_s (enforced inside the function, with
# a clean typed outcome) plus the time a cancelled install gets to clean up.
ARQ_JOB_TIMEOUT_EXTRA_S: Final = SETTLE_S
# How often an idle worker looks at the queue: the delay before a queued job starts.
POLL_DELAY_S: Final = 0.2
# Each worker writes a heartbeat this often; one silent for WORKER_TTL_S is not counted.
WORKER_HEARTBEAT_S: Final = 2.0
WORKER_TTL_S: Final = 10.0
# After Redis trouble the worker's poll loop starts over after a backoff within these bounds.
RESTART_MIN_S: Final = 0.2
RESTART_MAX_S: Final = 5.0
# On stop, running jobs get this long to settle and hand themselves back to the queue.
STOP_GRACE_S: Final = SETTLE_S + 5.0

_CTX: Final = "hiagent"


@dataclass(frozen=True)
class WorkerContext:
    """What the job function needs besides arq's ctx, shared by every arq `Worker` this queue
    worker makes: `slots` bounds the installs running at once across them, `running` holds
    the tasks arq runs them in (cancelled on stop, which arq answers by re-queueing)."""

    installer: Installer
    job_timeout_s: float
    result_ttl_ms: int
    slots: anyio.Semaphore
    running: set[asyncio.Task[Any]] = field(default_factory=set)


async def job_started(ctx: dict[str, Any]) -> None:
    """arq's `on_job_start` hook, awaited in the task arq runs the job in (its bookkeeping
    included): that task is what a stop cancels and waits for."""
    wctx: WorkerContext = ctx[_CTX]
    task = asyncio.current_task()
    if task is not None:
        wctx.running.add(task)
        task.add_done_callback(wctx.running.discard)


async def install_job(ctx: dict[str, Any]) -> Outcome:
    """The arq job function. Returns an Outcome; raises only when cancelled (re-queued)."""
    wctx: WorkerContext = ctx[_CTX]
    async with wctx.slots:
        return await _install(ctx, wctx)


async def _install(ctx: dict[str, Any], wctx: WorkerContext) -> Outcome:
    redis: Commands = ctx["redis"]
    job_id: str = ctx["job_id"]
    job_key = keys.job(job_id)
    raw_spec, cancel_requested = await redis.hmget(job_key, [keys.F_SPEC, keys.F_CANCEL])
    if raw_spec is None:
        return Outcome(status=JobStatus.FAILED, reason=f"{INTERNAL_ERROR}: the job record is gone")
    if cancel_requested is not None:
        return await _finish(
            redis, job_key, wctx,
            Outcome(status=JobStatus.STOPPED, reason=f"{CANCELLED}: cancelled before it started"),
        )  # fmt: skip
    spec = msgspec.json.decode(raw_spec, type=JobSpec)
    async with redis.pipeline(transaction=True) as tr:
        tr.hincrby(job_key, keys.F_RUNS, 1)
        tr.hset(job_key, keys.F_STARTED_AT_MS, str(int(time.time() * 1000)))
        tr.hdel(job_key, keys.F_PHASE)
        await tr.execute()

    async def on_phase(step: Step) -> None:
        await redis.hset(job_key, keys.F_PHASE, msgspec.json.encode(step))

    async def cancel_requested_now() -> bool:
        return bool(await redis.hexists(job_key, keys.F_CANCEL))

    try:
        outcome = await run_install(
            wctx.installer,
            spec,
            cancel=threading.Event(),
            timeout_s=wctx.job_timeout_s,
            on_phase=on_phase,
            cancel_requested=cancel_requested_now,
            rerun=ctx["job_try"] > 1,
        )
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True), anyio.move_on_after(SETTLE_S):
            try:
                await redis.hdel(job_key, keys.F_PHASE, keys.F_STARTED_AT_MS)
            except (RedisError, OSError) as exc:
                log.warning("job %s: could not reset its record: %s", job_id, exc)
        raise
    return await _finish(redis, job_key, wctx, outcome)


async def _finish(redis: Commands, job_key: str, wctx: WorkerContext, outcome: Outcome) -> Outcome:
    try:
        async with redis.pipeline(transaction=True) as tr:
            tr.hset(job_key, keys.F_FINISHED_AT_MS, str(int(time.time() * 1000)))
            tr.hdel(job_key, keys.F_PHASE)
            tr.pexpire(job_key, wctx.result_ttl_ms)
            await tr.execute()
    except (RedisError, OSError) as exc:
        log.warning("%s: could not record the end of the job: %s", job_key, exc)
    return outcome


def worker_context(config: Config, installer: Installer) -> WorkerContext:
    queue = config.queue
    return WorkerContext(
        installer=installer,
        job_timeout_s=queue.job_timeout_s,
        result_ttl_ms=int(queue.result_ttl_s * 1000),
        slots=anyio.Semaphore(queue.worker_concurrency),
    )


def make_worker(config: Config, context: WorkerContext, redis: ArqRedis) -> Worker:
    """An arq `Worker` for `context`: one per start of the poll loop (see `serve_queue`)."""
    queue = config.queue
    function = func(
        install_job,
        name=keys.JOB_FUNCTION,
        timeout=queue.job_timeout_s + ARQ_JOB_TIMEOUT_EXTRA_S,
        keep_result=queue.result_ttl_s,
        max_tries=MAX_TRIES,
    )
    return Worker(
        functions=[function],
        queue_name=queue.queue_name,
        redis_pool=redis,
        handle_signals=False,
        max_jobs=queue.worker_concurrency,
        job_timeout=queue.job_timeout_s + ARQ_JOB_TIMEOUT_EXTRA_S,
        keep_result=queue.result_ttl_s,
        poll_delay=POLL_DELAY_S,
        max_tries=MAX_TRIES,
        retry_jobs=True,
        allow_abort_jobs=False,
        job_serializer=codec.dumps,
        job_deserializer=codec.loads,
        ctx={_CTX: context},
        on_job_start=job_started,
    )


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def serve_queue(
    config: Config,
    installer: Installer,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run an arq worker until cancelled; Redis outages pause it, never end it."""
    redis = connect(config.queue, role="worker")
    context = worker_context(config, installer)
    me = worker_id()
    url = redact_url(config.queue.redis_url)
    try:
        async with anyio.create_task_group() as tg:
            with anyio.move_on_after(config.queue.connect_timeout_s):
                await _beat(redis, config.queue.queue_name, me)
            tg.start_soon(_heartbeat, redis, config.queue.queue_name, me)
            log.info("queue worker %s serving %r on %s", me, config.queue.queue_name, url)
            task_status.started()
            backoff_s = RESTART_MIN_S
            while True:
                # A fresh arq Worker each time round: arq takes a slot before it asks Redis to
                # claim a job, and a Redis error there loses that Worker's slot for good. The
                # jobs an earlier one still runs count against `context.slots`.
                try:
                    await make_worker(config, context, redis).main()
                except (RedisError, OSError) as exc:
                    log.warning("queue worker: Redis at %s failed (%s); retrying", url, exc)
                    await anyio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, RESTART_MAX_S)
    finally:
        with anyio.CancelScope(shield=True):
            await _stop(context, redis, config.queue.queue_name, me)


async def _beat(redis: Commands, queue_name: str, me: str) -> None:
    key = keys.workers(queue_name)
    try:
        async with redis.pipeline(transaction=True) as tr:
            tr.zadd(key, {me: int(time.time() * 1000)})
            tr.pexpire(key, int(WORKER_TTL_S * 4 * 1000))
            await tr.execute()
    except (RedisError, OSError) as exc:
        log.debug("queue worker heartbeat failed: %s", exc)


async def _heartbeat(redis: Commands, queue_name: str, me: str) -> None:
    while True:
        await anyio.sleep(WORKER_HEARTBEAT_S)
        await _beat(redis, queue_name, me)


async def _stop(context: WorkerContext, redis: ArqRedis, queue_name: str, me: str) -> None:
    """Cancel running jobs (arq puts them back in the queue), then let go of Redis."""
    tasks = list(context.running)
    for task in tasks:
        task.cancel()
    with anyio.move_on_after(STOP_GRACE_S):
        await asyncio.gather(*tasks, return_exceptions=True)
    with anyio.move_on_after(1.0):
        try:
            await redis.zrem(keys.workers(queue_name), me)
        except (RedisError, OSError):
            pass  # the heartbeat ages out on its own
    await close(redis)


async def run_worker(config: Config, *, installer: Installer | None = None) -> None:
    """`hiagent-host worker`: serve the queue until SIGTERM or SIGINT."""
    if installer is None:
        manager = PackageManager(config)
        await anyio.to_thread.run_sync(manager.recover)  # what a killed install left behind
        installer = manager
    async with anyio.create_task_group() as tg:
        tg.start_soon(_stop_on_signal, tg.cancel_scope)
        await serve_queue(config, installer)


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("queue worker: %s, stopping", signal.Signals(signum).name)
            scope.cancel()
            return
