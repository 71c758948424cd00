"""One plugin child process: spawn, handshake, calls, stderr, exit status and the stop ladder.

A `Child` lives in its supervisor task, `run()`, which the pool starts in its task group:
spawn → `initialize` within `start_timeout_s` → serve until the process exits or a stop is
asked → the stop ladder → clear the process group → report. The ladder, every step bounded:
`shutdown` request and wait (`stop_grace_s`) → close stdin and wait (`stop_grace_s`) →
SIGTERM to the process group and wait (`stop_grace_s`) → SIGKILL to the group → reap
(`REAP_TIMEOUT_S`). Whatever is still in the group once the child has exited (grandchildren)
gets SIGTERM, then SIGKILL after `stop_grace_s`.

In a sandbox the process started is bwrap, whose init (pid 1 of the jail's PID namespace)
runs the plugin process; the plugin process's host pid (`pid`) is looked up once it has
answered its handshake, and the ladder's signals go to its group. When it exits, init ends
the namespace (every process in it is killed), then bwrap exits with its status (a signal N
as 128 + N, reported as the signal).

A call that dies with its child fails with an error that says why: `PluginCrashed` if the
child exited on its own or was killed because a call on it left a cancel unanswered (every
other call on it fails the same way), `ShuttingDown` if the host is stopping, and
`PluginUnavailable` if the pool stopped it (package replaced or deleted).
"""

from __future__ import annotations

import enum
import logging
import signal
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn

import anyio
import anyio.abc

from hiagent_host.config import PoolConfig
from hiagent_host.errors import CANCELLED, HostError
from hiagent_host.packages import PackageRecord, sandbox
from hiagent_host.pool import launcher, pipes, procfs
from hiagent_host.pool.errors import (
    PluginCrashed,
    PluginStartFailed,
    PluginUnavailable,
    ShuttingDown,
    ToolTimeout,
)
from hiagent_host.pool.secrets import scrub
from hiagent_host.pool.stderr import RotatingFile, StderrSink
from hiagent_host.redact import NO_SECRETS, Secrets
from hiagent_host.rpc import (
    SHUTDOWN,
    DeadlineExceeded,
    PeerClosed,
    RpcPeer,
    StreamCall,
    initialize,
)

# After SIGKILL the kernel tears a process down in milliseconds; longer means a stuck (D-state)
# process, which is logged and given up on.
REAP_TIMEOUT_S: Final = 5.0
# Once the child has exited, the rest of its stderr (a crash's traceback) is read for this long.
STDERR_DRAIN_S: Final = 1.0
# How often a group with members left is looked at again while it is being cleared.
GROUP_POLL_S: Final = 0.02
# A call that lost its wire waits this long for the process to be reported dead.
EXIT_WAIT_S: Final = 5.0
# bwrap exits with 128 + N when the process it ran was killed by signal N (as shells do).
JAIL_SIGNAL_BASE: Final = 128
# A call cut because its process was stopped (replaced, evicted, idle) may retry at once.
RETRY_AFTER_STOPPED_S: Final = 1

log = logging.getLogger(__name__)

SlotKey = tuple[str, str]  # (dir_name, version_dir) of a package version


class ChildState(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPING = "stopping"
    DEAD = "dead"


class StopCause(enum.StrEnum):
    """Why a child ended (the first cause wins)."""

    CRASHED = "crashed"  # it exited without being asked
    START_FAILED = "start failed"
    DEADLINE = "killed at a deadline"  # a call's cancel went unanswered
    THREAD_ABANDONED = "replaced: a tool thread was abandoned"  # a cancelled sync tool runs on
    IDLE = "idle"
    EVICTED = "evicted"
    REPLACED = "replaced"
    DELETED = "deleted"
    SHUTDOWN = "shutdown"


# Ends the restart policy counts against a package.
UNEXPECTED: Final = frozenset({StopCause.CRASHED, StopCause.START_FAILED})


@dataclass(frozen=True)
class ExitStatus:
    """How a child ended."""

    cause: StopCause
    exit_code: int | None
    signal: str | None
    stderr_tail: str

    @property
    def reason(self) -> str:
        if self.signal is not None:
            return f"{self.cause}: signal {self.signal}"
        if self.exit_code is not None:
            return f"{self.cause}: exit code {self.exit_code}"
        return f"{self.cause}: exit status unknown"

    def data(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "signal": self.signal,
            "stderr_tail": self.stderr_tail,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start one child (built by the pool with `launcher`)."""

    argv: list[str]
    env: Mapping[str, str] = field(repr=False)  # may hold plugin storage credentials
    cwd: Path
    log_path: Path
    jailed: bool = False  # argv starts bwrap, which runs the plugin process in a sandbox


class Child:
    """One plugin process serving one package version; see the module docstring."""

    def __init__(
        self,
        record: PackageRecord,
        *,
        replica: int,
        spec: LaunchSpec,
        config: PoolConfig,
        restarts: int = 0,
        last_exit_reason: str | None = None,
    ) -> None:
        self.record = record
        self.key: SlotKey = (record.dir_name, record.version_dir)
        self.fingerprint = fingerprint(record)
        self.replica = replica
        self.restarts = restarts
        self.last_exit_reason = last_exit_reason
        self._spec = spec
        self._config = config
        self.pid: int | None = None  # the plugin process's (in a sandbox: once located)
        self._jail_init: int | None = None  # bwrap's init, in a sandbox
        self.started_at = time.monotonic()
        self.last_used = self.started_at
        self.in_flight = 0
        self.calls_total = 0
        self.exit: ExitStatus | None = None
        self._ready = False
        self._draining = False
        self._killed = False
        self._stop_cause: StopCause | None = None
        self._start_error: HostError | None = None
        self._start_problem: str | None = None  # why the start failed, when it did
        self._handshake_error: HostError | None = None  # the child's answer to initialize
        self._process: pipes.ChildProcess | None = None
        self._peer: RpcPeer | None = None
        self._handshake_scope: anyio.CancelScope | None = None
        tag = f"{record.name} {record.version}#{replica}"
        self._sink = StderrSink(
            RotatingFile(spec.log_path, max_bytes=config.log_max_bytes, backups=config.log_backups),
            tag,
        )
        self._started = anyio.Event()  # ready, or failed to start (then dead)
        self._wake = anyio.Event()  # a stop was asked, or the process exited
        self._exited = anyio.Event()
        self._stderr_closed = anyio.Event()
        self._dead = anyio.Event()
        self._idle: anyio.Event | None = None  # made only while someone waits for idle

    def __repr__(self) -> str:
        return f"<Child {self.record.name} {self.record.version}#{self.replica} pid={self.pid}>"

    # ---- state -------------------------------------------------------------------------

    @property
    def state(self) -> ChildState:
        """The lifecycle state, derived from what has happened."""
        if self._dead.is_set():
            return ChildState.DEAD
        if self._stop_cause is not None:
            return ChildState.STOPPING
        if self._draining:
            return ChildState.DRAINING
        return ChildState.READY if self._ready else ChildState.STARTING

    @property
    def usable(self) -> bool:
        """Whether new calls may be given to it."""
        return self.state in (ChildState.STARTING, ChildState.READY)

    @property
    def needs_replacement(self) -> bool:
        """A cancelled call left a tool thread running in it (it holds a worker for good):
        the pool drains it and starts a fresh one."""
        return self._peer is not None and self._peer.abandoned_threads > 0

    @property
    def evictable(self) -> bool:
        return self.state is ChildState.READY and self.in_flight == 0

    @property
    def ready(self) -> bool:
        """Whether it answered its handshake (it may have died since)."""
        return self._ready

    def reserve(self) -> None:
        """Count a call that will run on this child."""
        self.in_flight += 1

    def release(self) -> None:
        """A call that ran (or was going to run) here is over."""
        self.in_flight -= 1
        self.last_used = time.monotonic()
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    async def wait_ready(self) -> None:
        """Until the handshake is done; the start error (with its stderr tail) if it failed."""
        await self._started.wait()
        if self._start_error is not None:
            raise _copy(self._start_error)

    async def wait_idle(self, timeout_s: float) -> bool:
        """Until no call is in flight, at most `timeout_s`; whether it got there."""
        if self.in_flight:
            idle = self._idle = self._idle or anyio.Event()
            with anyio.move_on_after(timeout_s):
                await idle.wait()
        return self.in_flight == 0

    # ---- stopping ----------------------------------------------------------------------

    def begin_drain(self) -> None:
        """Take no new calls; the pool stops it once in-flight calls end."""
        self._draining = True

    def request_stop(self, cause: StopCause) -> None:
        """Start the stop ladder in the supervisor (idempotent; the first cause wins)."""
        if self._stop_cause is None:
            self._stop_cause = cause
        if self._handshake_scope is not None and cause is not StopCause.START_FAILED:
            self._handshake_scope.cancel()
        self._wake.set()

    def kill(self, cause: StopCause) -> None:
        """SIGKILL the whole group now, no ladder (a wedged child ignores politeness)."""
        self.request_stop(cause)
        self._killed = True
        if self._process is not None and not self._exited.is_set():
            procfs.signal_group(self._pgid(), signal.SIGKILL)

    async def stop(self, cause: StopCause) -> None:
        """Run the stop ladder and wait until the child is dead (bounded by the ladder)."""
        self.request_stop(cause)
        await self._dead.wait()

    # ---- the supervisor ----------------------------------------------------------------

    async def run(self) -> None:
        """The child's whole life; the pool runs it as a task."""
        try:
            await self._live()
        finally:
            with anyio.CancelScope(shield=True):
                await self._finish()

    async def _live(self) -> None:
        try:
            process = await launcher.spawn(self._spec.argv, env=self._spec.env, cwd=self._spec.cwd)
        except OSError as exc:
            self._start_problem = f"cannot start the plugin process: {exc}"
            self.request_stop(StopCause.START_FAILED)
            return
        self._process = process
        if not self._spec.jailed:
            self.pid = process.pid
        if process.stdin is None or process.stdout is None or process.stderr is None:
            raise RuntimeError("the plugin process was started without pipes")
        self._peer = RpcPeer.from_config(process.stdin, process.stdout, self._config)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._pump_stderr, process.stderr)
            tg.start_soon(self._peer.run)
            tg.start_soon(self._watch_exit, process)
            await self._handshake(self._peer)
            await self._wake.wait()
            if not self._exited.is_set():
                await self._ladder(self._peer)
            await self._clear_group()
            with anyio.move_on_after(STDERR_DRAIN_S):
                await self._stderr_closed.wait()
            tg.cancel_scope.cancel()

    async def _handshake(self, peer: RpcPeer) -> None:
        timeout_s = self._config.start_timeout_s
        with anyio.CancelScope() as scope:
            self._handshake_scope = scope
            with anyio.move_on_after(timeout_s) as deadline:
                try:
                    await initialize(
                        peer, timeout_s=timeout_s, thread_pool_size=self._config.thread_pool_size
                    )
                except PeerClosed:
                    self._start_problem = "it exited during the handshake"
                except HostError as exc:
                    self._start_problem = exc.message
                    self._handshake_error = exc
                else:
                    self._locate()
                    self._ready = True
                    self._started.set()
        self._handshake_scope = None
        if deadline.cancelled_caught:
            self._start_problem = f"no handshake within {timeout_s} s"
        if self._start_problem is not None:
            self.request_stop(StopCause.START_FAILED)

    def _locate(self) -> None:
        """In a sandbox: find the host pids of bwrap's init and of the plugin process."""
        if not self._spec.jailed or self.pid is not None or self._process is None:
            return
        chain = procfs.descendants(self._process.pid, depth=2)
        if chain:
            self._jail_init = chain[0]
            self.pid = chain[1] if len(chain) > 1 else None

    async def _watch_exit(self, process: pipes.ChildProcess) -> None:
        await process.wait()
        self._exited.set()
        self._wake.set()

    async def _pump_stderr(self, stream: anyio.abc.ByteReceiveStream) -> None:
        try:
            async for chunk in stream:
                self._sink.feed(chunk)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            pass  # the pipe went away with the process
        finally:
            self._stderr_closed.set()

    async def _ladder(self, peer: RpcPeer) -> None:
        grace = self._config.stop_grace_s
        if self._killed:
            await self._exit_within(REAP_TIMEOUT_S)
            return
        if self._ready:
            with anyio.move_on_after(grace):
                try:
                    await peer.call(SHUTDOWN, timeout_s=grace)
                except HostError:
                    pass  # it may be gone, wedged, or answering Cancelled: the ladder goes on
                await self._exited.wait()
            if self._exited.is_set():
                return
        await peer.aclose()  # close stdin: the shim exits on EOF
        if await self._exit_within(grace):
            return
        log.info("%r ignored its stdin closing; sending SIGTERM to its group", self)
        procfs.signal_group(self._pgid(), signal.SIGTERM)
        if await self._exit_within(grace):
            return
        log.warning("%r ignored SIGTERM; sending SIGKILL to its group", self)
        procfs.signal_group(self._pgid(), signal.SIGKILL)
        await self._exit_within(REAP_TIMEOUT_S)

    async def _exit_within(self, timeout_s: float) -> bool:
        with anyio.move_on_after(timeout_s):
            await self._exited.wait()
        return self._exited.is_set()

    async def _clear_group(self) -> None:
        """SIGTERM, then SIGKILL, whatever is left in the child's group (grandchildren)."""
        pgid = self._pgid()
        for signum, wait_s in (
            (signal.SIGTERM, self._config.stop_grace_s),
            (signal.SIGKILL, REAP_TIMEOUT_S),
        ):
            if not procfs.group_members(pgid):
                return
            procfs.signal_group(pgid, signum)
            with anyio.move_on_after(wait_s):
                # grandchildren are not ours to wait for: polling /proc is all there is
                while procfs.group_members(pgid):  # noqa: ASYNC110
                    await anyio.sleep(GROUP_POLL_S)
        if procfs.group_members(pgid):
            log.error("%r: processes of group %d survived SIGKILL", self, pgid)
        if self._jail_init is not None:  # the kernel empties the namespace as init ends
            with anyio.move_on_after(REAP_TIMEOUT_S):
                while procfs.is_running(self._jail_init):  # noqa: ASYNC110
                    await anyio.sleep(GROUP_POLL_S)

    def _pgid(self) -> int:
        """The group the ladder signals: the plugin process leads its own session. In a
        sandbox bwrap's init leads it, the plugin process and its children in it (init
        ignores all but SIGKILL, which ends the namespace); until init is located, bwrap's
        own group, whose death ends the sandbox as well."""
        if not self._spec.jailed:
            if self.pid is None:
                raise RuntimeError("the child has no process")
            return self.pid
        if self._jail_init is None and not self._exited.is_set():
            self._locate()
        if self._jail_init is not None:
            return self._jail_init
        if self._process is None:
            raise RuntimeError("the child has no process")
        return self._process.pid

    async def _finish(self) -> None:
        """Shielded: make sure the process and its group are gone, then report."""
        process = self._process
        if process is not None and not self._exited.is_set():
            procfs.signal_group(self._pgid(), signal.SIGKILL)  # torn down mid-way (cancelled)
            procfs.signal_group(process.pid, signal.SIGKILL)
            with anyio.move_on_after(REAP_TIMEOUT_S):
                await process.wait()
            self._exited.set()
        if process is not None:
            if procfs.group_members(process.pid):
                procfs.signal_group(process.pid, signal.SIGKILL)
            if self._peer is not None:
                self._peer.fail_all(PeerClosed("the plugin process exited"))
            with anyio.move_on_after(REAP_TIMEOUT_S):
                await process.aclose()
        self._sink.close()
        cause = self._stop_cause or (StopCause.CRASHED if self._ready else StopCause.START_FAILED)
        returncode = process.returncode if process is not None else None
        if self._spec.jailed and returncode is not None and returncode > JAIL_SIGNAL_BASE:
            returncode = JAIL_SIGNAL_BASE - returncode  # bwrap's way of passing on a signal
        self.exit = ExitStatus(
            cause=cause,
            exit_code=returncode if returncode is not None and returncode >= 0 else None,
            signal=_signal_name(-returncode) if returncode is not None and returncode < 0 else None,
            stderr_tail=self._sink.tail_text(),
        )
        if not self._ready:
            self._start_error = self._failed_start()
            self._started.set()
        self._dead.set()
        if cause in UNEXPECTED:
            log.warning("%r ended: %s", self, self.exit.reason)
        else:
            log.info("%r ended: %s", self, self.exit.reason)

    def _failed_start(self) -> HostError:
        exit_status = self.exit
        if exit_status is None or exit_status.cause is not StopCause.START_FAILED:
            return self.death_error()
        detail = self._start_problem or "it exited during the handshake"
        data = exit_status.data()
        step = sandbox.setup_failure(exit_status.stderr_tail) if self._spec.jailed else None
        if step is not None:
            detail = f"its sandbox could not be set up: {step}"
            data["sandbox_step"] = step
        if self._handshake_error is not None:
            data["error"] = self._handshake_error.to_dict()
        return PluginStartFailed(
            f"the plugin process of {self.record.name} {self.record.version} did not start: "
            f"{detail}",
            data=data,
        )

    # ---- calls -------------------------------------------------------------------------

    def remember(self, secrets: Secrets) -> None:
        """Mask `secrets` (a call's) in this child's stderr from now on (a bounded window)."""
        if secrets:
            self._sink.secrets.add(secrets)

    async def call(
        self, method: str, params: Any, timeout_s: float, hidden: Secrets = NO_SECRETS
    ) -> Any:
        """One request on this child; a failure is raised as the pool's error, `hidden`
        masked (`fail`)."""
        peer = self._serving()
        self.calls_total += 1
        try:
            return await peer.call(method, params, timeout_s=timeout_s)
        except HostError as exc:
            await self.fail(exc, timeout_s, hidden)

    @asynccontextmanager
    async def stream(
        self, method: str, params: Any, timeout_s: float, hidden: Secrets = NO_SECRETS
    ) -> AsyncIterator[AsyncIterator[Any]]:
        """A streaming request; errors before the first item raise here, on entry. Failures
        (on entry or between items) are the pool's errors, `hidden` masked (`fail`)."""
        peer = self._serving()
        self.calls_total += 1
        entered = False
        try:
            async with peer.stream(method, params, timeout_s=timeout_s) as call:
                items = _Items(self, call, timeout_s, hidden)
                await items.prefetch()
                entered = True
                yield items
        except HostError as exc:
            if entered:  # the consumer's own, or an item's (made the pool's already)
                raise
            await self.fail(exc, timeout_s, hidden)

    def _serving(self) -> RpcPeer:
        if self._peer is None or not self._ready:
            raise RuntimeError("a call on a child that is not ready")
        return self._peer

    async def fail(self, exc: HostError, timeout_s: float, hidden: Secrets) -> NoReturn:
        """Raise what a failed call's caller gets, the one place it is made: the pool's error
        for what the wire reported (`_translate`), with the call's secrets masked. The wire's
        error stays its cause only when it holds no secret."""
        error = scrub(await self._translate(exc, timeout_s), hidden)
        raise error from (None if hidden or error is exc else exc)

    async def _translate(self, exc: HostError, timeout_s: float) -> HostError:
        """The pool's error for a failed call (others pass through unchanged)."""
        if isinstance(exc, DeadlineExceeded):
            if not exc.cancel_acknowledged:
                self.kill(StopCause.DEADLINE)
            return ToolTimeout(
                f"the tool did not finish within {timeout_s} s",
                data={
                    "timeout_s": timeout_s,
                    "cancel_acknowledged": exc.cancel_acknowledged,
                    "killed": not exc.cancel_acknowledged,
                },
            )
        if isinstance(exc, PeerClosed):
            with anyio.move_on_after(EXIT_WAIT_S):
                await self._exited.wait()
            if not self._exited.is_set():  # its wire is gone but it lives on: wedged
                self.kill(StopCause.CRASHED)
            with anyio.move_on_after(REAP_TIMEOUT_S + self._config.stop_grace_s + STDERR_DRAIN_S):
                await self._dead.wait()
            return self.death_error()
        if exc.code == CANCELLED and self._stop_cause is not None:
            return self.death_error()  # the shim cancelled it because we stopped the child
        return exc

    def death_error(self) -> HostError:
        """The error for a call that this child's end cut short."""
        status = self.exit
        cause = status.cause if status is not None else self._stop_cause or StopCause.CRASHED
        data = status.data() if status is not None else {"reason": str(cause)}
        what = f"the plugin process of {self.record.name} {self.record.version}"
        if cause is StopCause.SHUTDOWN:
            return ShuttingDown(f"{what} was stopped: the host is shutting down", data=data)
        if cause in (StopCause.CRASHED, StopCause.START_FAILED):
            return PluginCrashed(f"{what} crashed ({data['reason']})", data=data)
        if cause is StopCause.DEADLINE:
            return PluginCrashed(
                f"{what} was killed: a call on it did not let go at its deadline", data=data
            )
        retry = {"retry_after_s": RETRY_AFTER_STOPPED_S}  # a new process serves the next call
        return PluginUnavailable(f"{what} was stopped ({cause})", data={**data, **retry})


class _Items:
    """A stream's items: the first one fetched on entry, failures the pool's errors."""

    _NOTHING: Final = object()

    def __init__(self, child: Child, call: StreamCall, timeout_s: float, hidden: Secrets) -> None:
        self._child = child
        self._call = call
        self._timeout_s = timeout_s
        self._hidden = hidden
        self._first: Any = self._NOTHING
        self._done = False

    async def prefetch(self) -> None:
        try:
            self._first = await self._fetch()
        except StopAsyncIteration:
            self._done = True

    def __aiter__(self) -> _Items:
        return self

    async def __anext__(self) -> Any:
        if self._first is not self._NOTHING:
            item, self._first = self._first, self._NOTHING
            return item
        if self._done:
            raise StopAsyncIteration
        try:
            return await self._fetch()
        except StopAsyncIteration:
            self._done = True
            raise

    async def _fetch(self) -> Any:
        try:
            return await self._call.__anext__()
        except HostError as exc:
            await self._child.fail(exc, self._timeout_s, self._hidden)


def fingerprint(record: PackageRecord) -> tuple[str, str, str]:
    """What tells one build of a package version from another."""
    return (record.build, record.wheel_sha256, record.installed_at)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def _copy(error: HostError) -> HostError:
    """A fresh copy of a shared error, so each caller's raise has its own traceback."""
    return type(error)(
        error.message, code=error.code, http_status=error.http_status, data=error.data
    )
