"""What a job is: its status enum, the shapes callers see, and the backend interface.

Both backends (local and redis) speak exactly this interface; the HTTP routes and the CLI
code against `JobBackend` only. Failures are `HostError`s with stable codes:
`JobNotFound` 404, `InvalidJobState` 400, `QueueUnavailable` 503.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, Final, Protocol, Self
from urllib.parse import urlsplit

import msgspec

from hiagent_host.config import redact_url
from hiagent_host.errors import (
    INVALID_JOB_STATE,
    INVALID_REQUEST,
    JOB_NOT_FOUND,
    QUEUE_UNAVAILABLE,
    HostError,
)

# The phase a started job reports once a cancel was requested and before it has stopped.
PHASE_CANCELLING: Final = "cancelling"
# The reason prefix of a job that was queued or running when its process went away.
INTERRUPTED: Final = "Interrupted"
# `cancel` on a started job waits this long for it to stop, so that a status read right
# after the cancel usually says `stopped` (the install itself needs well under a second).
CANCEL_WAIT_S: Final = 5.0
# How often that wait looks at the job again.
CANCEL_WAIT_POLL_S: Final = 0.05

_JOB_ID: Final = re.compile(r"[0-9a-f]{32}")


class JobStatus(StrEnum):
    """The status strings clients parse (`GetInstallPackageAsyncStatus`)."""

    QUEUED = "queued"
    DEFERRED = "deferred"  # redis: in the queue, but not due yet (arq re-queue with a delay)
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"  # cancelled

    @property
    def active(self) -> bool:
        """Queued, deferred or started: the job may still run or is running."""
        return self in _ACTIVE

    @property
    def terminal(self) -> bool:
        return not self.active


_ACTIVE: Final = frozenset({JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.STARTED})


class JobSpec(msgspec.Struct, frozen=True, kw_only=True):
    """The arguments of one install: what retry runs again, and what duplicates compare."""

    uri: str
    filename: str
    force: bool

    def dedup_key(self) -> str:
        """Equal for requests that would install the same thing the same way."""
        raw = msgspec.json.encode([self.uri, self.filename, self.force])
        return hashlib.sha256(raw).hexdigest()[:32]


def job_spec(uri: str, filename: str, force: bool) -> JobSpec:
    """The spec of a new job; a uri with credentials is refused (a job record is stored and
    shown to every caller, and a worker elsewhere would need the password in it)."""
    if "@" in urlsplit(uri).netloc:
        raise HostError(
            "an asynchronous install cannot use credentials in its uri (the job record would "
            "keep them); use InstallPackage, which sends them as HTTP basic auth and keeps "
            "only the masked uri",
            code=INVALID_REQUEST,
            http_status=422,
            data={"uri": redact_url(uri)},
        )
    return JobSpec(uri=uri, filename=filename, force=force)


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """How one run of a job ended: returned by the job function, never raised."""

    status: JobStatus  # FINISHED, FAILED or STOPPED
    reason: str | None = None  # "<code>: <message>" on failed/stopped
    data: dict[str, Any] | None = None  # PackageMetaBrief on finished


class Step(msgspec.Struct, frozen=True, kw_only=True):
    """Where a started install is: its phase, and while downloading the bytes so far."""

    phase: str
    downloaded_bytes: int | None = None
    download_size_bytes: int | None = None  # from Content-Length or the file; None: unknown


class JobInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a caller may learn about a job."""

    job_id: str
    status: JobStatus
    reason: str | None
    data: dict[str, Any] | None
    phase: str | None
    uri: str
    filename: str
    force: bool
    enqueued_at: str
    started_at: str | None
    finished_at: str | None
    attempts: int  # how many times the install has started (retries and re-runs included)
    downloaded_bytes: int | None = None  # while started: bytes of the wheel fetched so far
    download_size_bytes: int | None = None  # ... of this many, when known


class QueueHealth(msgspec.Struct, frozen=True, kw_only=True):
    """The queue's part of `/v1/health`."""

    backend: str
    ok: bool
    reason: str | None
    depth: int | None  # jobs queued or running
    workers: int | None  # workers seen alive (redis) / install slots (local)


class Installer(Protocol):
    """What the jobs need from the package manager (`hiagent_host.packages.PackageManager`)."""

    def install(
        self,
        uri: str,
        filename: str,
        *,
        force: bool,
        progress: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
        on_bytes: Callable[[int, int | None], None] | None = None,
    ) -> Any: ...

    def get(self, name: str, version: str) -> Any:
        """The installed record of `name` `version` (a HostError when there is none)."""
        ...


class JobBackend(Protocol):
    """Asynchronous installs. Enter it once per process; every call is bounded in time."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def submit(self, uri: str, filename: str, force: bool) -> str:
        """Queue an install; a duplicate of a queued or started job returns that job's id."""
        ...

    async def status(self, job_id: str) -> JobInfo:
        """The job's status, derived from what is stored. JobNotFound when unknown/expired."""
        ...

    async def cancel(self, job_id: str) -> None:
        """Queued: never runs. Started: stops, nothing half-installed. Stopped: no-op.
        Finished/failed: InvalidJobState."""
        ...

    async def retry(self, job_id: str) -> str:
        """Run a finished/failed/stopped job again with the same arguments, under the same
        id (returned). If a duplicate is already queued or started, that job's id is returned
        instead. Queued/started: InvalidJobState."""
        ...

    async def list(self, limit: int) -> list[JobInfo]:
        """The newest jobs first (by when they were queued), at most `limit`; expired ones
        are not listed."""
        ...

    async def health(self) -> QueueHealth: ...


# ---- errors ---------------------------------------------------------------------------


def job_not_found(job_id: str) -> HostError:
    return HostError(
        f"no job {job_id!r} (unknown, or its record expired)",
        code=JOB_NOT_FOUND,
        http_status=404,
        data={"job_id": job_id},
    )


def invalid_state(job_id: str, status: JobStatus, action: str) -> HostError:
    hint = {
        "cancel": "only a queued or started job can be cancelled",
        "retry": "only a finished, failed or stopped job can be retried",
    }[action]
    return HostError(
        f"cannot {action} job {job_id!r}: it is {status.value}; {hint}",
        code=INVALID_JOB_STATE,
        http_status=400,
        data={"job_id": job_id, "status": status.value},
    )


def queue_unavailable(detail: str) -> HostError:
    return HostError(
        f"the install queue is unavailable: {detail}",
        code=QUEUE_UNAVAILABLE,
        http_status=503,
    )


# ---- small helpers --------------------------------------------------------------------


def new_job_id() -> str:
    return uuid.uuid4().hex


def is_job_id(job_id: str) -> bool:
    """Job ids are 32 lowercase hex digits; anything else is unknown (and never a path)."""
    return _JOB_ID.fullmatch(job_id) is not None


def iso_from_unix(unix_s: float) -> str:
    """`1700000000.5` → `2023-11-14T22:13:20.500Z` (UTC, millisecond precision)."""
    stamp = datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def now_iso() -> str:
    return iso_from_unix(time.time())


def brief_of(record: Any, spec: JobSpec) -> dict[str, Any]:
    """PackageMetaBrief `{name, version, uri, filename}` of what an install returned."""
    brief = getattr(record, "brief", None)
    if callable(brief):
        value = brief()
        if isinstance(value, msgspec.Struct):
            value = msgspec.to_builtins(value)
        if isinstance(value, dict):
            return value
    return {
        "name": str(record.name),
        "version": str(record.version),
        "uri": spec.uri,
        "filename": spec.filename,
    }


def step_of(stored: str | None) -> Step:
    """A stored Step (JSON), or a bare phase name as older records hold it."""
    if not stored:
        return Step(phase="")
    if stored.startswith("{"):
        try:
            return msgspec.json.decode(stored, type=Step)
        except msgspec.DecodeError:
            return Step(phase="")
    return Step(phase=stored)


def reason_of(exc: HostError) -> str:
    return f"{exc.code}: {exc.message}"
