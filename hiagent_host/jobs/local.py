"""The local backend: installs run inside the server process; records live on disk.

Each job is `state_dir/jobs/<id>.json` (schema-versioned, written atomically under one
cross-process lock), so every server process sharing the state directory sees every job, and a
restart forgets nothing. Each backend instance holds an flock on `jobs/owners/<owner>.lock`
for as long as it lives; a queued or started job whose owner lock is free belongs to a process
that died, and is reported failed ("Interrupted: …"), then rewritten so at the next start.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar

import anyio
import anyio.abc
import anyio.to_thread
import msgspec

from hiagent_host.config import Config
from hiagent_host.errors import CANCELLED
from hiagent_host.jobs.install_run import run_install
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
)
from hiagent_host.storage import FileLock, atomic_write_bytes

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION: Final = 1
# The jobs lock guards one small read-modify-write; waiting longer means something is stuck.
LOCK_TIMEOUT_S: Final = 10.0


class LocalRecord(msgspec.Struct, frozen=True, kw_only=True):
    """`jobs/<id>.json`. `state` is what the owner last wrote; `derive` adds the rest."""

    schema: int = SCHEMA_VERSION
    job_id: str
    spec: JobSpec
    state: JobStatus
    owner: str
    enqueued_at_unix_s: float
    started_at_unix_s: float | None = None
    finished_at_unix_s: float | None = None
    attempts: int = 0
    phase: str | None = None
    downloaded_bytes: int | None = None
    download_size_bytes: int | None = None
    reason: str | None = None
    data: dict[str, Any] | None = None
    cancel_requested: bool = False


_encoder: Final = msgspec.json.Encoder(order="deterministic")
_decoder: Final = msgspec.json.Decoder(LocalRecord)


def interrupted_reason(record: LocalRecord) -> str:
    where = "running" if record.state is JobStatus.STARTED else "queued"
    return f"{INTERRUPTED}: the server stopped while this job was {where}"


def derive(
    record: LocalRecord, *, owner_alive: bool, now_unix_s: float, result_ttl_s: float
) -> JobInfo | None:
    """The one place a local job's status is decided; None means expired."""
    status, reason, phase = record.state, record.reason, record.phase
    finished = record.finished_at_unix_s
    if status.terminal:
        if finished is not None and now_unix_s - finished > result_ttl_s:
            return None
    elif not owner_alive:
        status, reason, phase = JobStatus.FAILED, interrupted_reason(record), None
    elif status is JobStatus.STARTED and record.cancel_requested:
        phase = PHASE_CANCELLING
    return JobInfo(
        job_id=record.job_id,
        status=status,
        reason=reason,
        data=record.data if status is JobStatus.FINISHED else None,
        phase=phase if status is JobStatus.STARTED else None,
        uri=record.spec.uri,
        filename=record.spec.filename,
        force=record.spec.force,
        enqueued_at=iso_from_unix(record.enqueued_at_unix_s),
        started_at=_iso(record.started_at_unix_s),
        finished_at=_iso(finished),
        attempts=record.attempts,
        downloaded_bytes=record.downloaded_bytes if status is JobStatus.STARTED else None,
        download_size_bytes=record.download_size_bytes if status is JobStatus.STARTED else None,
    )


def _iso(unix_s: float | None) -> str | None:
    return None if unix_s is None else iso_from_unix(unix_s)


@dataclass
class _Run:
    """A job this process owns and has not finished."""

    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    cancel: threading.Event = field(default_factory=threading.Event)
    done: anyio.Event = field(default_factory=anyio.Event)


class JobStore:
    """Blocking file operations on `jobs/`; called from worker threads."""

    def __init__(self, root: Path, owner: str, result_ttl_s: float) -> None:
        self.root = root
        self.owner = owner
        self.result_ttl_s = result_ttl_s
        self.owners = root / "owners"

    def path(self, job_id: str) -> Path:
        return self.root / f"{job_id}.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        lock = FileLock(self.root / ".lock")
        if not lock.acquire(timeout_s=LOCK_TIMEOUT_S):
            raise queue_unavailable(f"the job store lock {lock.path} is held by a stuck process")
        try:
            yield
        finally:
            lock.release()

    def read(self, job_id: str) -> LocalRecord | None:
        if not is_job_id(job_id):
            return None
        try:
            record = _decoder.decode(self.path(job_id).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, msgspec.DecodeError) as exc:
            log.warning("ignoring unreadable job record %s: %s", self.path(job_id), exc)
            return None
        if record.schema != SCHEMA_VERSION:
            log.warning("ignoring job record %s with schema %s", job_id, record.schema)
            return None
        return record

    def write(self, record: LocalRecord) -> None:
        atomic_write_bytes(self.path(record.job_id), _encoder.encode(record) + b"\n")

    def owner_alive(self, owner: str) -> bool:
        if owner == self.owner:
            return True
        lock = FileLock(self.owners / f"{owner}.lock")
        if lock.acquire(timeout_s=0):
            lock.release()
            return False
        return True

    def info(self, record: LocalRecord) -> JobInfo | None:
        alive = record.state.terminal or self.owner_alive(record.owner)
        return derive(
            record, owner_alive=alive, now_unix_s=time.time(), result_ttl_s=self.result_ttl_s
        )

    def records(self) -> Iterator[LocalRecord]:
        for path in sorted(self.root.glob("*.json")):
            if (record := self.read(path.stem)) is not None:
                yield record

    def newest(self, limit: int) -> list[JobInfo]:
        """What `list` answers: the newest jobs that have not expired."""
        records = sorted(self.records(), key=lambda r: r.enqueued_at_unix_s, reverse=True)
        infos = (self.info(r) for r in records)
        return [info for info in infos if info is not None][:limit]

    # ---- transitions (each under the lock) ----

    def submit(self, spec: JobSpec) -> tuple[str, bool]:
        """(job id, created): an active duplicate's id, or a new queued job's."""
        with self.locked():
            if (existing := self._active_duplicate(spec)) is not None:
                return existing, False
            record = LocalRecord(
                job_id=new_job_id(),
                spec=spec,
                state=JobStatus.QUEUED,
                owner=self.owner,
                enqueued_at_unix_s=time.time(),
            )
            self.write(record)
            return record.job_id, True

    def _active_duplicate(self, spec: JobSpec, *, other_than: str | None = None) -> str | None:
        """Also removes expired records: the scan reads every record anyway."""
        for record in self.records():
            info = self.info(record)
            if info is None:
                self.path(record.job_id).unlink(missing_ok=True)
            elif info.status.active and record.spec == spec and record.job_id != other_than:
                return record.job_id
        return None

    def start(self, job_id: str) -> LocalRecord | None:
        """queued → started, if it is still ours to run."""
        with self.locked():
            record = self.read(job_id)
            if record is None or record.state is not JobStatus.QUEUED or record.owner != self.owner:
                return None
            record = msgspec.structs.replace(
                record,
                state=JobStatus.STARTED,
                started_at_unix_s=time.time(),
                attempts=record.attempts + 1,
            )
            self.write(record)
            return record

    def set_phase(self, job_id: str, step: Step) -> None:
        self._update_started(
            job_id,
            lambda r: msgspec.structs.replace(
                r,
                phase=step.phase,
                downloaded_bytes=step.downloaded_bytes,
                download_size_bytes=step.download_size_bytes,
            ),
        )

    def finish(self, job_id: str, outcome: Outcome) -> None:
        self._update_started(
            job_id,
            lambda r: msgspec.structs.replace(
                r,
                state=outcome.status,
                reason=outcome.reason,
                data=outcome.data,
                phase=None,
                finished_at_unix_s=time.time(),
            ),
        )

    def _update_started(self, job_id: str, change: Callable[[LocalRecord], LocalRecord]) -> None:
        with self.locked():
            record = self.read(job_id)
            if record is not None and record.state is JobStatus.STARTED:
                self.write(change(record))

    def cancel_requested(self, job_id: str) -> bool:
        record = self.read(job_id)
        return record is None or record.cancel_requested

    def cancel(self, job_id: str) -> Literal["stopped", "requested", "noop"]:
        with self.locked():
            record = self.read(job_id)
            info = None if record is None else self.info(record)
            if record is None or info is None:
                raise job_not_found(job_id)
            if info.status is JobStatus.STOPPED:
                return "noop"
            if info.status in (JobStatus.FINISHED, JobStatus.FAILED):
                raise invalid_state(job_id, info.status, "cancel")
            if record.state is JobStatus.QUEUED:
                self.write(
                    msgspec.structs.replace(
                        record,
                        state=JobStatus.STOPPED,
                        reason=f"{CANCELLED}: cancelled before it started",
                        finished_at_unix_s=time.time(),
                    )
                )
                return "stopped"
            self.write(msgspec.structs.replace(record, cancel_requested=True))
            return "requested"

    def retry(self, job_id: str) -> tuple[str, JobSpec | None]:
        """(job id, spec to run): an active duplicate's id and None, or this job re-queued."""
        with self.locked():
            record = self.read(job_id)
            info = None if record is None else self.info(record)
            if record is None or info is None:
                raise job_not_found(job_id)
            if info.status.active:
                raise invalid_state(job_id, info.status, "retry")
            if (existing := self._active_duplicate(record.spec, other_than=job_id)) is not None:
                return existing, None
            self.write(
                LocalRecord(
                    job_id=job_id,
                    spec=record.spec,
                    state=JobStatus.QUEUED,
                    owner=self.owner,
                    enqueued_at_unix_s=time.time(),
                    attempts=record.attempts,
                )
            )
            return job_id, record.spec

    def recover(self) -> None:
        """At start: persist what died with its owner; drop expired records and dead owners."""
        with self.locked():
            for record in self.records():
                info = self.info(record)
                if info is None:
                    self.path(record.job_id).unlink(missing_ok=True)
                elif record.state.active and info.status is JobStatus.FAILED:
                    self.write(self._interrupted(record))
            for lock_path in self.owners.glob("*.lock"):
                owner = lock_path.stem
                if owner != self.owner and not self.owner_alive(owner):
                    lock_path.unlink(missing_ok=True)

    def abandon_mine(self) -> None:
        """At stop: what this process still had queued or running is interrupted."""
        with self.locked():
            for record in self.records():
                if record.owner == self.owner and record.state.active:
                    self.write(self._interrupted(record))

    @staticmethod
    def _interrupted(record: LocalRecord) -> LocalRecord:
        return msgspec.structs.replace(
            record,
            state=JobStatus.FAILED,
            reason=interrupted_reason(record),
            phase=None,
            finished_at_unix_s=time.time(),
        )


class LocalBackend:
    """Installs run in this process, at most `queue.worker_concurrency` at a time."""

    def __init__(self, config: Config, installer: Installer) -> None:
        self._installer = installer
        self._job_timeout_s = config.queue.job_timeout_s
        self._concurrency = config.queue.worker_concurrency
        self._store = JobStore(config.state_dir / "jobs", new_job_id(), config.queue.result_ttl_s)
        self._owner_lock = FileLock(self._store.owners / f"{self._store.owner}.lock")
        self._limiter = anyio.CapacityLimiter(max(1, self._concurrency))
        self._runs: dict[str, _Run] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        await anyio.to_thread.run_sync(partial(self._owner_lock.acquire, LOCK_TIMEOUT_S))
        self._stack.callback(self._owner_lock.release)
        self._stack.push_async_callback(self._abandon_mine)
        await anyio.to_thread.run_sync(self._store.recover)
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._tg is not None:
            self._tg.cancel_scope.cancel()  # running installs are cancelled and cleaned up
        self._tg = None
        await self._stack.aclose()

    async def _abandon_mine(self) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._store.abandon_mine)

    async def _io(self, fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn)

    async def submit(self, uri: str, filename: str, force: bool) -> str:
        spec = job_spec(uri, filename, force)
        job_id, created = await self._io(partial(self._store.submit, spec))
        if created:
            self._spawn(job_id, spec)
        return job_id

    async def status(self, job_id: str) -> JobInfo:
        record = await self._io(partial(self._store.read, job_id))
        info = None if record is None else await self._io(partial(self._store.info, record))
        if info is None:
            raise job_not_found(job_id)
        return info

    async def cancel(self, job_id: str) -> None:
        result = await self._io(partial(self._store.cancel, job_id))
        run = self._runs.get(job_id)
        if result == "stopped" and run is not None:
            run.scope.cancel()
        elif result == "requested":
            if run is not None:
                run.cancel.set()
            await self._wait_stopped(job_id, run)

    async def _wait_stopped(self, job_id: str, run: _Run | None) -> None:
        with anyio.move_on_after(CANCEL_WAIT_S):
            if run is not None:
                await run.done.wait()
                return
            while True:
                if (await self.status(job_id)).status.terminal:
                    return
                await anyio.sleep(CANCEL_WAIT_POLL_S)

    async def retry(self, job_id: str) -> str:
        new_id, spec = await self._io(partial(self._store.retry, job_id))
        if spec is not None:
            self._spawn(new_id, spec)
        return new_id

    async def list(self, limit: int) -> list[JobInfo]:
        return await self._io(partial(self._store.newest, limit))

    async def health(self) -> QueueHealth:
        return QueueHealth(
            backend="local",
            ok=self._tg is not None,
            reason=None if self._tg is not None else "the local job runner is not started",
            depth=len(self._runs),
            workers=self._concurrency,
        )

    def _spawn(self, job_id: str, spec: JobSpec) -> None:
        if self._tg is None:
            raise queue_unavailable("the local job runner is not started")
        run = self._runs[job_id] = _Run()
        self._tg.start_soon(self._run, job_id, spec, run)

    async def _run(self, job_id: str, spec: JobSpec, run: _Run) -> None:
        try:
            with run.scope:
                async with self._limiter:
                    if await self._io(partial(self._store.start, job_id)) is None:
                        return
                    outcome = await run_install(
                        self._installer,
                        spec,
                        cancel=run.cancel,
                        timeout_s=self._job_timeout_s,
                        on_phase=partial(self._on_phase, job_id),
                        cancel_requested=partial(self._cancel_requested, job_id),
                    )
                    await self._io(partial(self._store.finish, job_id, outcome))
        except Exception:  # a store failure ends this job only, never the runner
            log.exception("job %s: the job store failed", job_id)
        finally:
            run.done.set()
            if self._runs.get(job_id) is run:
                del self._runs[job_id]

    async def _on_phase(self, job_id: str, step: Step) -> None:
        await self._io(partial(self._store.set_phase, job_id, step))

    async def _cancel_requested(self, job_id: str) -> bool:
        return await self._io(partial(self._store.cancel_requested, job_id))
