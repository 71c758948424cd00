"""Run one install to a typed `Outcome`: in a thread, with phases, cancel and a deadline.

Both backends call `run_install`. The package manager's `install` is blocking; it runs in a
worker thread and is stopped through its `cancel` event (which kills the resolver subprocess
and cleans up). When the awaiting task itself is cancelled (a worker shutting down), the event
is set and the thread is given `SETTLE_S` to clean up before the cancellation propagates.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Final, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread

from hiagent_host.errors import (
    ALREADY_INSTALLED,
    CANCELLED,
    INSTALL_FAILED,
    INTERNAL_ERROR,
    HostError,
)
from hiagent_host.jobs.model import (
    Installer,
    JobSpec,
    JobStatus,
    Outcome,
    Step,
    brief_of,
    reason_of,
)
from hiagent_host.packages import DOWNLOADING

log = logging.getLogger(__name__)

T = TypeVar("T")

# A cancelled install gets this long to kill its subprocess and remove its half-built venv.
SETTLE_S: Final = 5.0
# How often a running install looks for a cancel request made by another process.
CANCEL_POLL_S: Final = 0.2
# Phases waiting to be recorded; the install never blocks on a slow store.
PHASE_BUFFER: Final = 32
# Download progress is recorded at most this often (each record is a store write).
BYTES_EVERY_S: Final = 0.25

PhaseSink = Callable[[Step], Awaitable[None]]
CancelCheck = Callable[[], Awaitable[bool]]


async def in_thread_cancellable(fn: Callable[[], T], cancel: threading.Event) -> T:
    """`fn()` in a worker thread; if the caller is cancelled, set `cancel` and let it settle."""
    done = threading.Event()

    def target() -> T:
        try:
            return fn()
        finally:
            done.set()

    try:
        return await anyio.to_thread.run_sync(target, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        cancel.set()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(done.wait, SETTLE_S)
        raise


async def run_install(
    installer: Installer,
    spec: JobSpec,
    *,
    cancel: threading.Event,
    timeout_s: float,
    on_phase: PhaseSink | None = None,
    cancel_requested: CancelCheck | None = None,
    rerun: bool = False,
) -> Outcome:
    """Install `spec`; every failure becomes an Outcome, only outer cancellation propagates.

    `rerun`: an earlier try of this same job may have installed it before its worker died;
    if so, `AlreadyInstalled` for the very same uri and filename means it finished.
    """
    send, receive = anyio.create_memory_object_stream[Step](PHASE_BUFFER)
    last_bytes_at = -math.inf

    def report(step: Step) -> None:
        try:
            anyio.from_thread.run_sync(send.send_nowait, step)
        except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # a phase is a hint; the install goes on without it
        except RuntimeError:
            pass  # the event loop is gone (the worker is shutting down)

    def progress(phase: str) -> None:
        report(Step(phase=phase))

    def on_bytes(done: int, total: int | None) -> None:
        nonlocal last_bytes_at
        now = time.monotonic()
        if now - last_bytes_at >= BYTES_EVERY_S or done == total:
            last_bytes_at = now
            report(Step(phase=DOWNLOADING, downloaded_bytes=done, download_size_bytes=total))

    install = partial(
        installer.install,
        spec.uri,
        spec.filename,
        force=spec.force,
        progress=progress,
        cancel=cancel,
        on_bytes=on_bytes,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(_watch, receive, cancel, on_phase, cancel_requested)
        try:
            outcome = await _outcome_of(install, spec, cancel, timeout_s)
            if rerun and outcome.reason and outcome.reason.startswith(f"{ALREADY_INSTALLED}:"):
                outcome = await anyio.to_thread.run_sync(_adopt, installer, spec, outcome)
        finally:
            send.close()
            tg.cancel_scope.cancel()
    return outcome


async def _outcome_of(
    install: Callable[[], Any], spec: JobSpec, cancel: threading.Event, timeout_s: float
) -> Outcome:
    try:
        with anyio.move_on_after(timeout_s if timeout_s > 0 else math.inf):
            record = await in_thread_cancellable(install, cancel)
            return Outcome(status=JobStatus.FINISHED, data=brief_of(record, spec))
        return Outcome(
            status=JobStatus.FAILED,
            reason=f"{INSTALL_FAILED}: the install did not finish within "
            f"job_timeout_s={timeout_s:g}",
        )
    except HostError as exc:
        stopped = exc.code == CANCELLED
        return Outcome(
            status=JobStatus.STOPPED if stopped else JobStatus.FAILED, reason=reason_of(exc)
        )
    except Exception as exc:
        log.exception("install of %s failed unexpectedly", spec.filename)
        return Outcome(
            status=JobStatus.FAILED, reason=f"{INTERNAL_ERROR}: {type(exc).__name__}: {exc}"
        )


def _adopt(installer: Installer, spec: JobSpec, outcome: Outcome) -> Outcome:
    """The installed record, if an earlier try of this job is what installed it."""
    name, version = _name_version(spec.filename)
    try:
        record = installer.get(name, version)
    except HostError:
        return outcome
    if getattr(record, "uri", None) == spec.uri and getattr(record, "filename", None) == (
        spec.filename
    ):
        log.info("%s was installed by an earlier try of this job", spec.filename)
        return Outcome(status=JobStatus.FINISHED, data=brief_of(record, spec))
    return outcome


def _name_version(filename: str) -> tuple[str, str]:
    """`pkg_x-1.0-py3-none-any.whl` → (`pkg_x`, `1.0`)."""
    parts = filename.removesuffix(".whl").split("-")
    return parts[0], parts[1] if len(parts) > 1 else ""


async def _watch(
    receive: anyio.abc.ObjectReceiveStream[Step],
    cancel: threading.Event,
    on_phase: PhaseSink | None,
    cancel_requested: CancelCheck | None,
) -> None:
    """Record phases as they come; poll for a cancel request made elsewhere."""
    async with receive:
        while True:
            step: Step | None = None
            with anyio.move_on_after(CANCEL_POLL_S):
                try:
                    step = await receive.receive()
                except anyio.EndOfStream:
                    return
            if step is not None and on_phase is not None:
                await _quietly(on_phase, step)
            if (
                cancel_requested is not None
                and not cancel.is_set()
                and await _quietly(cancel_requested)
            ):
                cancel.set()


async def _quietly(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """A store hiccup while recording progress must not fail the install itself."""
    try:
        return await fn(*args)
    except Exception as exc:  # noqa: BLE001 - the store is Redis or a file; neither may fail the install
        log.warning("could not record job progress: %r", exc)
        return None
