"""The redis backend, API side: jobs on an arq queue that `hiagent-host worker`s run.

A job is arq's keys plus our hash `hiagent:job:<id>` (see `keys.py`). Submit, cancel of a
queued job and retry are single WATCH/MULTI transactions, so two API processes and any number
of workers can race without a job running twice. `derive` is the one place a status is
decided. Every call is bounded by `queue.connect_timeout_s`; Redis errors become
`QueueUnavailable` 503, and the next call after Redis returns simply works.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

import anyio
import msgspec
from arq.constants import expires_extra_ms
from arq.jobs import serialize_job, serialize_result
from redis.exceptions import RedisError, WatchError

from hiagent_host.config import Config, redact_url
from hiagent_host.errors import CANCELLED, INTERNAL_ERROR, HostError
from hiagent_host.jobs import codec, keys
from hiagent_host.jobs.connection import Commands, close, connect
from hiagent_host.jobs.model import (
    CANCEL_WAIT_POLL_S,
    CANCEL_WAIT_S,
    INTERRUPTED,
    PHASE_CANCELLING,
    Installer,
    JobInfo,
    JobSpec,
    JobStatus,
    Outcome,
    QueueHealth,
    Step,
    invalid_state,
    is_job_id,
    iso_from_unix,
    job_not_found,
    job_spec,
    new_job_id,
    queue_unavailable,
    step_of,
)
from hiagent_host.jobs.worker import (
    ARQ_JOB_TIMEOUT_EXTRA_S,
    MAX_TRIES,
    WORKER_TTL_S,
    serve_queue,
)

log = logging.getLogger(__name__)

# WATCH/MULTI transactions retried this often under contention before giving up.
TX_ATTEMPTS: Final = 8
# arq's in-progress key outlives a job's timeout by this much (arq adds it).
ARQ_IN_PROGRESS_EXTRA_S: Final = 10.0
# Listing jobs scans the job hashes in batches of this many keys (one round trip each) ...
SCAN_COUNT: Final = 1000
# ... and looks at no more than this many (kept for result_ttl_s, so a busy day's worth).
MAX_LISTED_SCAN: Final = 20_000


@dataclass(frozen=True)
class Stored:
    """Everything Redis holds about one job, read in one transaction."""

    job: dict[bytes, bytes]
    result: bytes | None
    in_progress: bool
    score: float | None


def derive(job_id: str, stored: Stored, *, now_ms: float) -> JobInfo | None:
    """The one place a redis job's status is decided; None: unknown or expired."""
    job = {k.decode(): v.decode() for k, v in stored.job.items()}
    if keys.F_SPEC not in job:
        return None
    spec = msgspec.json.decode(job[keys.F_SPEC], type=JobSpec)
    cancel_requested = keys.F_CANCEL in job
    step = Step(phase="")
    finished_ms = _int(job.get(keys.F_FINISHED_AT_MS))
    data = None
    reason = None
    if stored.result is not None:
        result = codec.loads(stored.result)
        outcome = outcome_of_result(result, cancel_requested=cancel_requested)
        status, reason, data = outcome.status, outcome.reason, outcome.data
        finished_ms = finished_ms or _int(result.get("ft"))
    elif stored.in_progress:
        status = JobStatus.STARTED
        step = step_of(job.get(keys.F_PHASE))
        if cancel_requested:
            step = Step(phase=PHASE_CANCELLING)
    elif stored.score is not None:
        status = JobStatus.DEFERRED if stored.score > now_ms else JobStatus.QUEUED
    else:
        return None  # arq no longer has it: its result expired (or Redis lost it)
    return JobInfo(
        job_id=job_id,
        status=status,
        reason=reason,
        data=data if status is JobStatus.FINISHED else None,
        phase=step.phase or None,
        uri=spec.uri,
        filename=spec.filename,
        force=spec.force,
        enqueued_at=iso_from_unix(int(job[keys.F_ENQUEUED_AT_MS]) / 1000),
        started_at=_iso_ms(_int(job.get(keys.F_STARTED_AT_MS))),
        finished_at=_iso_ms(finished_ms) if status.terminal else None,
        attempts=_int(job.get(keys.F_RUNS)) or 0,
        downloaded_bytes=step.downloaded_bytes,
        download_size_bytes=step.download_size_bytes,
    )


def outcome_of_result(result: dict[str, Any], *, cancel_requested: bool) -> Outcome:
    """arq's stored result → Outcome: ours as returned, or what arq stored by itself."""
    value = result.get("r")
    if result.get("s") and isinstance(value, dict):
        with contextlib.suppress(msgspec.ValidationError):
            return msgspec.convert(value, Outcome)
    if cancel_requested:
        return Outcome(status=JobStatus.STOPPED, reason=f"{CANCELLED}: cancelled")
    if isinstance(value, dict) and "exception" in value:
        message = str(value.get("message", ""))
        if "retries exceeded" in message:
            return Outcome(
                status=JobStatus.FAILED,
                reason=f"{INTERRUPTED}: the worker running this job stopped or died on each "
                f"of its {MAX_TRIES} tries",
            )
        if "expired" in message:
            return Outcome(
                status=JobStatus.FAILED,
                reason=f"{INTERRUPTED}: no worker started this job before it expired",
            )
        return Outcome(
            status=JobStatus.FAILED,
            reason=f"{INTERNAL_ERROR}: {value.get('exception')}: {message}",
        )
    return Outcome(status=JobStatus.FAILED, reason=f"{INTERNAL_ERROR}: unreadable job result")


def _int(raw: str | int | None) -> int | None:
    return None if raw is None else int(raw)


def _iso_ms(ms: int | None) -> str | None:
    return None if ms is None else iso_from_unix(ms / 1000)


def _now_ms() -> int:
    return int(time.time() * 1000)


async def watch_and_derive(pipe: Any, queue_name: str, job_id: str) -> JobInfo:
    """WATCH a job's keys in `pipe` (a transaction about to change them) and derive its state."""
    job_key = keys.job(job_id)
    await pipe.watch(job_key, keys.arq_in_progress(job_id), keys.arq_result(job_id))
    stored = Stored(
        job=await pipe.hgetall(job_key),
        result=await pipe.get(keys.arq_result(job_id)),
        in_progress=bool(await pipe.exists(keys.arq_in_progress(job_id))),
        score=await pipe.zscore(queue_name, job_id),
    )
    info = derive(job_id, stored, now_ms=_now_ms())
    if info is None:
        raise job_not_found(job_id)
    return info


async def read_stored(redis: Commands, queue_name: str, job_id: str) -> Stored:
    """One consistent snapshot (MULTI/EXEC) of a job's keys."""
    async with redis.pipeline(transaction=True) as tr:
        tr.hgetall(keys.job(job_id))
        tr.get(keys.arq_result(job_id))
        tr.exists(keys.arq_in_progress(job_id))
        tr.zscore(queue_name, job_id)
        job, result, in_progress, score = await tr.execute()
    return Stored(job=job, result=result, in_progress=bool(in_progress), score=score)


class RedisBackend:
    """Jobs on Redis via arq; with `with_worker`, this process also runs a worker."""

    def __init__(self, config: Config, installer: Installer, *, with_worker: bool) -> None:
        self._config = config
        self._queue = config.queue
        self._installer = installer
        self._with_worker = with_worker
        self._redis: Commands = connect(config.queue, role="api")
        self._stack = contextlib.AsyncExitStack()
        self._result_ttl_ms = int(self._queue.result_ttl_s * 1000)
        # Our hash must outlive everything arq may still do with a queued job.
        arq_timeout_s = self._queue.job_timeout_s + ARQ_JOB_TIMEOUT_EXTRA_S
        self._queued_ttl_ms = (
            expires_extra_ms
            + int(MAX_TRIES * (arq_timeout_s + ARQ_IN_PROGRESS_EXTRA_S) * 1000)
            + self._result_ttl_ms
        )

    def __repr__(self) -> str:
        return f"RedisBackend(redis_url={redact_url(self._queue.redis_url)!r})"

    async def __aenter__(self) -> Self:
        self._stack.push_async_callback(close, self._redis)
        if self._with_worker:
            tg = await self._stack.enter_async_context(anyio.create_task_group())
            self._stack.callback(tg.cancel_scope.cancel)
            await tg.start(serve_queue, self._config, self._installer)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    @contextlib.asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """Bound the block by connect_timeout_s; Redis trouble → QueueUnavailable."""
        url = redact_url(self._queue.redis_url)
        timeout_s = self._queue.connect_timeout_s
        try:
            with anyio.fail_after(timeout_s):
                yield
        except TimeoutError as exc:
            raise queue_unavailable(f"Redis at {url} did not answer within {timeout_s:g}s") from exc
        except (RedisError, OSError) as exc:
            raise queue_unavailable(f"cannot use Redis at {url}: {exc}") from exc

    async def _info(self, job_id: str) -> JobInfo | None:
        stored = await read_stored(self._redis, self._queue.queue_name, job_id)
        return derive(job_id, stored, now_ms=_now_ms())

    async def submit(self, uri: str, filename: str, force: bool) -> str:
        spec = job_spec(uri, filename, force)
        dedup = keys.dedup(self._queue.queue_name, spec.dedup_key())
        async with self._guard():
            for _ in range(TX_ATTEMPTS):
                async with self._redis.pipeline(transaction=True) as pipe:
                    await pipe.watch(dedup)
                    if (existing := await self._active_duplicate(pipe, dedup)) is not None:
                        return existing
                    job_id = new_job_id()
                    pipe.multi()
                    pipe.hset(
                        keys.job(job_id),
                        mapping={keys.F_SPEC: msgspec.json.encode(spec), keys.F_RUNS: 0},
                    )
                    self._enqueue(pipe, job_id, dedup)
                    try:
                        await pipe.execute()
                    except WatchError:
                        continue
                    return job_id
        raise queue_unavailable("too much contention on the queue; try again")

    async def _active_duplicate(
        self, pipe: Commands, dedup: str, *, other_than: str | None = None
    ) -> str | None:
        raw = await pipe.get(dedup)
        if raw is None or raw.decode() == other_than:
            return None
        existing: str = raw.decode()
        info = await self._info(existing)
        return existing if info is not None and info.status.active else None

    def _enqueue(self, pipe: Commands, job_id: str, dedup: str) -> None:
        """Queue `job_id` for a worker (what arq's enqueue_job does, inside our MULTI)."""
        now_ms = _now_ms()
        payload = serialize_job(keys.JOB_FUNCTION, (), {}, None, now_ms, serializer=codec.dumps)
        pipe.hset(keys.job(job_id), keys.F_ENQUEUED_AT_MS, now_ms)
        pipe.pexpire(keys.job(job_id), self._queued_ttl_ms)
        pipe.set(dedup, job_id, px=self._queued_ttl_ms)
        pipe.psetex(keys.arq_job(job_id), expires_extra_ms, payload)
        pipe.zadd(self._queue.queue_name, {job_id: now_ms})

    async def status(self, job_id: str) -> JobInfo:
        if not is_job_id(job_id):
            raise job_not_found(job_id)
        async with self._guard():
            info = await self._info(job_id)
        if info is None:
            raise job_not_found(job_id)
        return info

    async def list(self, limit: int) -> list[JobInfo]:
        async with self._guard():
            ids: list[str] = []
            async for key in self._redis.scan_iter(match=f"{keys.JOB}*", count=SCAN_COUNT):
                job_id = (key.decode() if isinstance(key, bytes) else key).removeprefix(keys.JOB)
                if is_job_id(job_id):
                    ids.append(job_id)
                if len(ids) >= MAX_LISTED_SCAN:
                    break
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hget(keys.job(job_id), keys.F_ENQUEUED_AT_MS)
                stamps = await pipe.execute()
            newest = sorted(zip((_int(s) or 0 for s in stamps), ids, strict=True), reverse=True)
            infos: list[JobInfo] = []
            for _, job_id in newest:
                if len(infos) >= limit:
                    break
                if (info := await self._info(job_id)) is not None:
                    infos.append(info)
        return infos

    async def cancel(self, job_id: str) -> None:
        if not is_job_id(job_id):
            raise job_not_found(job_id)
        async with self._guard():
            started = await self._cancel(job_id)
        if started:
            await self._wait_stopped(job_id)

    async def _cancel(self, job_id: str) -> bool:
        """Stop a queued job inside one transaction; True: it is running, cancel requested."""
        job_key = keys.job(job_id)
        queue_name = self._queue.queue_name
        for _ in range(TX_ATTEMPTS):
            async with self._redis.pipeline(transaction=True) as pipe:
                info = await watch_and_derive(pipe, queue_name, job_id)
                if info.status is JobStatus.STOPPED:
                    return False
                if info.status.terminal:
                    raise invalid_state(job_id, info.status, "cancel")
                if info.status is JobStatus.STARTED:
                    await pipe.reset()
                    await self._redis.hset(job_key, keys.F_CANCEL, "1")
                    return True
                now_ms = _now_ms()
                outcome = Outcome(
                    status=JobStatus.STOPPED, reason=f"{CANCELLED}: cancelled before it started"
                )
                result = serialize_result(
                    keys.JOB_FUNCTION, (), {}, 0, now_ms, True, outcome, now_ms, now_ms,
                    f"{job_id}:{keys.JOB_FUNCTION}", queue_name, job_id, serializer=codec.dumps,
                )  # fmt: skip
                in_progress = keys.arq_in_progress(job_id)
                pipe.multi()
                # Touch the in-progress key: a worker about to start this job WATCHes it, so
                # its start fails; the job is then gone from the queue for good.
                pipe.set(in_progress, b"cancelled")
                pipe.delete(in_progress, keys.arq_job(job_id), keys.arq_retry(job_id))
                pipe.zrem(queue_name, job_id)
                pipe.set(keys.arq_result(job_id), result or b"", px=self._result_ttl_ms)
                pipe.hset(job_key, mapping={keys.F_CANCEL: 1, keys.F_FINISHED_AT_MS: now_ms})
                pipe.pexpire(job_key, self._result_ttl_ms)
                try:
                    await pipe.execute()
                except WatchError:
                    continue
                return False
        raise queue_unavailable("too much contention on the queue; try again")

    async def _wait_stopped(self, job_id: str) -> None:
        """A started job was asked to stop: give it CANCEL_WAIT_S to report that it has."""
        with anyio.move_on_after(CANCEL_WAIT_S):
            while True:
                try:
                    if (await self.status(job_id)).status.terminal:
                        return
                except HostError:
                    return  # the request is recorded; the worker acts on it regardless
                await anyio.sleep(CANCEL_WAIT_POLL_S)

    async def retry(self, job_id: str) -> str:
        if not is_job_id(job_id):
            raise job_not_found(job_id)
        job_key = keys.job(job_id)
        queue_name = self._queue.queue_name
        async with self._guard():
            for _ in range(TX_ATTEMPTS):
                async with self._redis.pipeline(transaction=True) as pipe:
                    info = await watch_and_derive(pipe, queue_name, job_id)
                    if info.status.active:
                        raise invalid_state(job_id, info.status, "retry")
                    spec = JobSpec(uri=info.uri, filename=info.filename, force=info.force)
                    dedup = keys.dedup(queue_name, spec.dedup_key())
                    existing = await self._active_duplicate(pipe, dedup, other_than=job_id)
                    if existing is not None:
                        return existing
                    pipe.multi()
                    pipe.hdel(
                        job_key,
                        keys.F_STARTED_AT_MS,
                        keys.F_FINISHED_AT_MS,
                        keys.F_PHASE,
                        keys.F_CANCEL,
                    )
                    pipe.delete(keys.arq_result(job_id), keys.arq_retry(job_id))
                    self._enqueue(pipe, job_id, dedup)
                    try:
                        await pipe.execute()
                    except WatchError:
                        continue
                    return job_id
        raise queue_unavailable("too much contention on the queue; try again")

    async def health(self) -> QueueHealth:
        workers_key = keys.workers(self._queue.queue_name)
        try:
            async with self._guard(), self._redis.pipeline(transaction=False) as pipe:
                pipe.ping()
                pipe.zcard(self._queue.queue_name)
                pipe.zremrangebyscore(workers_key, "-inf", _now_ms() - WORKER_TTL_S * 1000)
                pipe.zcard(workers_key)
                _, depth, _, workers = await pipe.execute()
        except HostError as exc:
            return QueueHealth(
                backend="redis", ok=False, reason=f"{exc.code}: {exc.message}", depth=None,
                workers=None,
            )  # fmt: skip
        reason = None
        if not workers:
            reason = (
                f"no queue worker has reported within {WORKER_TTL_S:g}s; start "
                "`hiagent-host worker` (or `hiagent-host serve --with-worker`)"
            )
        return QueueHealth(
            backend="redis", ok=bool(workers), reason=reason, depth=int(depth),
            workers=int(workers),
        )  # fmt: skip
