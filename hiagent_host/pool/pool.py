"""The process pool: which child serves a call, how many there are, and when they go.

One child per installed package version (or `replicas` of them, calls going to the one with
the fewest in flight), started on the first call and reused. At most `max_subprocess`
children: a new one at the cap evicts the least recently used idle child, and when every
child is busy the call waits up to `acquire_timeout_s` for a slot, then fails with
`PoolExhausted`. Children idle for `idle_timeout_s` stop. A package that crash-loops is
refused by the restart policy. A replaced or deleted package's children drain (in-flight
calls get `drain_timeout_s`) and stop; a replacement made by another process is noticed on
the next call, from the record file's identity (or at once, when the package manager hears
of it and tells its listeners). Builds are materialised (with a packages store) and leased
while their children run: `builds.py`.
Deadlines: `call_timeout_s` by default, the caller may ask for less, never more than
`max_call_timeout_s`; the deadline counts from when the call is sent to the child (acquiring
and starting it are bounded on their own).

With `prewarm_on_install`, a package version installed or replaced while the pool runs gets
its child started right away (if there is room: prewarming never evicts), so that its first
call is warm. An install made in this process (the package listener) returns once that child
has answered its handshake (bounded by `start_timeout_s`; a failure to start is logged, never
the install's); one made by another process (a queue worker, the CLI) is noticed within
`PREWARM_SCAN_S`, by listing the records.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Final

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import msgspec
from msgspec import Meta
from packaging.utils import canonicalize_name
from packaging.version import Version

from hiagent_host import redact
from hiagent_host.config import Config
from hiagent_host.errors import HostError, InvalidInput
from hiagent_host.packages import (
    EventKind,
    PackageEvent,
    PackageManager,
    PackageNotFound,
    PackageRecord,
    sandbox,
)
from hiagent_host.pool import launcher, procfs
from hiagent_host.pool.builds import Builds
from hiagent_host.pool.child import (
    UNEXPECTED,
    Child,
    ChildState,
    LaunchSpec,
    SlotKey,
    StopCause,
    fingerprint,
)
from hiagent_host.pool.errors import (
    PluginStartFailed,
    PluginUnavailable,
    PoolExhausted,
    ShuttingDown,
    ToolTimeout,
)
from hiagent_host.pool.plugin_config import has_s3_client, shared_storage_dir
from hiagent_host.pool.policy import RestartPolicy, choose_victim, retry_after_s
from hiagent_host.pool.secrets import call_secrets
from hiagent_host.redact import NO_SECRETS, Secrets
from hiagent_host.rpc import METADATA, RUN_TOOL, VALIDATE, BusyPoll, running_busy_poll

# The idle reaper looks again at least this often (a child may go idle at any time).
IDLE_SCAN_MAX_S: Final = 5.0
# Record lookups cached by (name, version) as the caller spelt them; cleared when full.
RECORD_CACHE_SIZE: Final = 1024
# Ends that count as a restart of the slot, though not as a crash of the package.
REPLACED_AFTER_A_CALL: Final = frozenset({StopCause.DEADLINE, StopCause.THREAD_ABANDONED})
# A starting child answers its handshake within start_timeout_s; its death is reported
# within the stop ladder after that. A waiter gives up this much later than the timeout.
START_WAIT_MARGIN_S: Final = 10.0
# With prewarm_on_install, how often the records are listed for installs made by another
# process (a stat per installed version; the record cache makes it cheap).
PREWARM_SCAN_S: Final = 1.0

log = logging.getLogger(__name__)


class ProcessInfo(msgspec.Struct, frozen=True):
    """One live plugin process, as `ListProcesses` and `hiagent-host ps` show it."""

    package: Annotated[str, Meta(description="Distribution name.")] = msgspec.field(name="pkg")
    version: Annotated[str, Meta(description="Version.")]
    pid: Annotated[int | None, Meta(description="Process id (null before it started).")]
    state: Annotated[ChildState, Meta(description="Its lifecycle state.")]
    uptime_s: Annotated[float, Meta(description="Seconds since it started.")]
    calls_in_flight: Annotated[int, Meta(description="Calls running now.")]
    calls_total: Annotated[int, Meta(description="Calls served.")]
    restarts: Annotated[int, Meta(description="Restarts of this slot after crashes.")]
    rss_bytes: Annotated[int | None, Meta(description="Resident memory (null when unknown).")]
    last_exit_reason: Annotated[str | None, Meta(description="How its predecessor ended.")]
    replica: Annotated[int, Meta(description="Which replica of the package version.")]
    sandbox: Annotated[str, Meta(description='"bubblewrap", "bubblewrap, no network", or "none".')]
    build: Annotated[str, Meta(description="The venv build directory it runs from.")]
    node: Annotated[str, Meta(description="The node (server process) it belongs to.")] = ""


class PoolStats(msgspec.Struct, frozen=True):
    """Gauges (processes, busy, idle) and cumulative counters, for /metrics and health."""

    processes: int
    busy: int
    idle: int
    starts: int
    crashes: int
    evictions: int
    timeouts: int
    idle_stops: int
    busy_poll_hits: int  # the loop polled until every answer had come (rpc/busypoll.py)
    busy_poll_misses: int  # ... and ran out of budget, then slept


class _Slot(msgspec.Struct):
    """What outlives one child of a (package version, replica): its history."""

    restarts: int = 0
    last_exit_reason: str | None = None


class Pool:
    """Every plugin child of this host process; see the module docstring."""

    def __init__(self, config: Config, packages: PackageManager) -> None:
        self.config = config
        self.packages = packages
        self._pool = config.pool
        self._host_is_root = os.geteuid() == 0
        self.sandbox = sandbox.require(config)  # ConfigError: "on" where it cannot be
        self._jail = sandbox.jail(config)
        self._policy = RestartPolicy(
            limit=self._pool.restart_limit,
            window_s=self._pool.restart_window_s,
            cooldown_s=self._pool.restart_cooldown_s,
        )
        self._live: set[Child] = set()  # every child not yet dead (counts for the cap)
        self._serving: dict[SlotKey, list[Child]] = {}  # children that take new calls
        self._slots: dict[tuple[SlotKey, int], _Slot] = {}
        self._records: dict[tuple[str, str], tuple[PackageRecord, str, Identity | None]] = {}
        # Replicas per package name; the config is frozen, so this is looked up once per name.
        self._replica_counts: dict[str, int] = {}
        self._venvs = Builds(packages)  # materialised once, leased while children run
        self._changed: anyio.Event | None = None  # made only while someone waits
        self._closing = False
        self._tg: anyio.abc.TaskGroup | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._loop_thread: int | None = None
        self._busy: BusyPoll | None = None
        self._starts = self._crashes = self._evictions = self._timeouts = self._idle_stops = 0

    # ---- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Pool:
        found = self.sandbox
        if found.active:
            log.info(
                "plugin processes run sandboxed (pool.sandbox = %s): %s", found.mode, found.reason
            )
        elif found.mode == "off":
            log.info("plugin processes run without a sandbox: %s", found.reason)
        else:
            log.warning(
                "plugin processes run WITHOUT a sandbox (pool.sandbox = %s): %s",
                found.mode,
                found.reason,
            )
        self._token = anyio.lowlevel.current_token()
        self._loop_thread = threading.get_ident()
        self._busy = running_busy_poll(self._pool.busy_poll_us)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._reap_idle)
        if self._pool.prewarm_on_install:
            try:
                known: (
                    dict[tuple[str, str, str], PackageRecord] | None
                ) = await anyio.to_thread.run_sync(self._builds)
            except HostError as exc:  # e.g. a packages store not read yet: the first scan
                log.warning("prewarm: %s; the first successful scan is the baseline", exc.message)
                known = None
            self._tg.start_soon(self._watch_installs, known)
        self.packages.add_listener(self._on_package_event)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.packages.remove_listener(self._on_package_event)
        self._closing = True
        self._notify()
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(self._pool.drain_timeout_s):
                while any(c.in_flight for c in self._live):
                    await self._wait_change()
            async with anyio.create_task_group() as tg:
                for child in list(self._live):
                    tg.start_soon(child.stop, StopCause.SHUTDOWN)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
            self._tg = None

    # ---- calls -------------------------------------------------------------------------

    async def run_tool(
        self,
        name: str,
        version: str,
        plugin: str,
        tool: str,
        input: dict[str, Any],
        cfg: dict[str, Any] | None,
        *,
        timeout_s: float | None = None,
        secrets: Secrets = NO_SECRETS,
    ) -> Any:
        """Run one tool in the package's child and return its result; `secrets` are masked
        along with those the config schema marks."""
        params = {"plugin": plugin, "tool": tool, "input": input, "cfg": cfg}
        timeout = self._deadline(timeout_s)
        return await self._call(
            name, version, RUN_TOOL, params, timeout, plugin=plugin, secrets=secrets
        )

    @asynccontextmanager
    async def stream_tool(
        self,
        name: str,
        version: str,
        plugin: str,
        tool: str,
        input: dict[str, Any],
        cfg: dict[str, Any] | None,
        *,
        timeout_s: float | None = None,
        secrets: Secrets = NO_SECRETS,
    ) -> AsyncIterator[AsyncIterator[Any]]:
        """Stream one tool's items; leaving early cancels the call in the child.

        Errors (on entry or between items) come with the call's secrets masked.
        """
        timeout = self._deadline(timeout_s)
        params = {"plugin": plugin, "tool": tool, "input": input, "cfg": cfg, "stream": True}
        record = await self._resolve(name, version)
        hidden = call_secrets(record, plugin, cfg) | secrets
        child = await self._acquire(record)
        child.remember(hidden)
        try:
            async with child.stream(RUN_TOOL, params, timeout, hidden) as items:
                yield items
        except ToolTimeout:
            self._timeouts += 1
            raise
        finally:
            self._release(child)

    async def validate(
        self,
        name: str,
        version: str,
        plugin: str,
        cfg: dict[str, Any] | None,
        *,
        secrets: Secrets = NO_SECRETS,
    ) -> None:
        """Have the plugin check `cfg`; its rejection is raised with the plugin's code."""
        params = {"plugin": plugin, "cfg": cfg}
        timeout = self._pool.call_timeout_s
        await self._call(name, version, VALIDATE, params, timeout, plugin=plugin, secrets=secrets)

    async def metadata(self, name: str, version: str) -> dict[str, Any]:
        """Every plugin's Metadata, as the running child describes it."""
        result = await self._call(name, version, METADATA, {}, self._pool.call_timeout_s)
        return dict(result)

    async def _call(
        self,
        name: str,
        version: str,
        method: str,
        params: dict[str, Any],
        timeout_s: float,
        *,
        plugin: str | None = None,
        secrets: Secrets = NO_SECRETS,
    ) -> Any:
        """One request; the secrets of its cfg are masked in its errors (by the child, which
        makes them), in the log lines written meanwhile, and in the child's stderr."""
        record = await self._resolve(name, version)
        hidden = (secrets | call_secrets(record, plugin, params.get("cfg"))) if plugin else secrets
        token = redact.activate(hidden)
        try:
            child = await self._acquire(record)
            child.remember(hidden)
            try:
                return await child.call(method, params, timeout_s, hidden)
            except ToolTimeout:
                self._timeouts += 1
                raise
            finally:
                self._release(child)
        finally:
            redact.restore(token)

    def _deadline(self, timeout_s: float | None) -> float:
        if timeout_s is None:
            return self._pool.call_timeout_s
        if not timeout_s > 0:  # NaN included
            raise InvalidInput("timeout_s must be a positive number of seconds")
        return min(timeout_s, self._pool.max_call_timeout_s)

    # ---- stopping ----------------------------------------------------------------------

    async def _retire_keys(
        self, keys: set[SlotKey], cause: StopCause, keep: tuple[str, str, str] | None = None
    ) -> None:
        """Every child of `keys` (but those of build `keep`): no new calls, drain, stop;
        forget their crash history."""
        children = [c for c in self._live if c.key in keys and c.fingerprint != keep]
        for key in keys:
            self._forget(key)
            kept = [c for c in self._serving.pop(key, []) if c.fingerprint == keep]
            if kept:
                self._serving[key] = kept
        async with anyio.create_task_group() as tg:
            for child in children:
                tg.start_soon(self._retire, child, cause)

    def _forget(self, key: SlotKey) -> None:
        """A new build (or none): its crash history and restart counts start from zero."""
        self._policy.reset(key)
        for slot in [s for s in self._slots if s[0] == key]:
            del self._slots[slot]

    async def _retire(self, child: Child, cause: StopCause) -> None:
        """Drain `child` (bounded), then stop it."""
        self._unserve(child)
        child.begin_drain()
        if child.in_flight and not await child.wait_idle(self._pool.drain_timeout_s):
            log.warning("%r: %d call(s) still in flight after the drain", child, child.in_flight)
        await child.stop(cause)

    def _on_package_event(self, event: PackageEvent) -> None:
        """A package listener (any thread): retire the old build's children before the
        manager removes it; an installing thread waits for that (bounded by the drain)."""
        if threading.get_ident() == self._loop_thread:
            if self._tg is not None:
                self._tg.start_soon(self._on_event, event)
            return
        try:
            anyio.from_thread.run(self._on_event, event, token=self._token)
        except RuntimeError as exc:  # the pool's event loop is gone
            log.debug("package event after the pool closed: %s", exc)

    async def _on_event(self, event: PackageEvent) -> None:
        cause = StopCause.DELETED if event.kind is EventKind.DELETED else StopCause.REPLACED
        keys = {c.key for c in self._live if _same(c.record, event.name, event.version)}
        if event.record is not None:
            keys.add((event.record.dir_name, event.record.version_dir))
        self._records.clear()
        # A child of the new build may be up already (a call, or a prewarm scan, that came
        # between the commit and this event): it stays.
        keep = fingerprint(event.record) if event.record is not None else None
        await self._retire_keys(keys, cause, keep)
        if event.record is not None and self._pool.prewarm_on_install:
            self.prewarm(event.record)
            # The install returns once its process answers (whoever started it).
            key: SlotKey = (event.record.dir_name, event.record.version_dir)
            for child in list(self._serving.get(key, [])):
                await self._settle(child)

    async def _settle(self, child: Child) -> None:
        """Wait (bounded) for a prewarmed child's handshake; its failure is its own business
        (the restart policy counts it), never the install's."""
        with anyio.move_on_after(self._pool.start_timeout_s + START_WAIT_MARGIN_S):
            try:
                await child.wait_ready()
            except HostError as exc:
                log.warning("prewarming %r failed: %s", child, exc.message)

    # ---- prewarming --------------------------------------------------------------------

    def prewarm(self, record: PackageRecord) -> Child | None:
        """Start a child of `record` now, unless one serves it already or there is no room
        (it never evicts) or the package is crash-looping; the child started, if any."""
        if self._closing:
            return None
        key: SlotKey = (record.dir_name, record.version_dir)
        self._retire_stale(key, fingerprint(record))
        if self._serving.get(key) or not self._has_room():
            return None
        if self._policy.blocked_for(key, time.monotonic()) is not None:
            return None
        if not self.packages.is_materialised(record):  # a packages store: build it here first
            self._spawn_task(self._materialise_and_prewarm, record)
            return None
        log.info("prewarming %s %s", record.name, record.version)
        try:
            return self._start(key, record)
        except HostError as exc:  # e.g. the build went meanwhile: the first call starts one
            log.warning("prewarming %s %s: %s", record.name, record.version, exc.message)
            return None

    async def _materialise_and_prewarm(self, record: PackageRecord) -> None:
        try:
            await self._venvs.materialise(record)
        except HostError as exc:  # its first call tries again
            log.warning("materialising %s %s: %s", record.name, record.version, exc.message)
            return
        if self.packages.is_materialised(record):
            self.prewarm(record)

    def _builds(self) -> dict[tuple[str, str, str], PackageRecord]:
        """Every installed build, by (dir, version dir, build); blocking (a worker thread)."""
        return {(r.dir_name, r.version_dir, r.build): r for r in self.packages.list()}

    async def _watch_installs(
        self, known: dict[tuple[str, str, str], PackageRecord] | None
    ) -> None:
        """Prewarm every build that appears after the start (installs by other processes);
        `known` None: what the first successful scan finds was there at the start."""
        while True:
            await anyio.sleep(PREWARM_SCAN_S)
            try:
                builds = await anyio.to_thread.run_sync(self._builds)
            except HostError as exc:  # an unreadable record: the next scan tries again
                log.warning("prewarm scan: %s", exc.message)
                continue
            for build, record in builds.items():
                if known is not None and build not in known:
                    self.prewarm(record)
            known = builds

    # ---- acquiring a child -------------------------------------------------------------

    async def _resolve(self, name: str, version: str) -> PackageRecord:
        """The current record, its venv materialised on this node (never a suspension on
        the warm path: both checks are in memory)."""
        try:
            record = self._record(name, version)
        except PackageNotFound:
            if self.packages.remote is None:
                raise
            record = await anyio.to_thread.run_sync(self.packages.lookup, name, version)
        if self.packages.remote is not None:  # without a packages store every venv is here
            await self._venvs.materialise(record)
        return record

    def _record(self, name: str, version: str) -> PackageRecord:
        """The current record, re-read only when its file changed (another process may
        have replaced the package); with a packages store, the view is in memory and every
        change of it reaches `_on_event`, which clears this cache."""
        cached = self._records.get((name, version))
        if cached is not None:
            record, path, identity = cached
            if self.packages.remote is not None or _identity(path) == identity:
                return record
        record = self.packages.get(name, version)
        path = str(self.packages.layout.record_path(record.dir_name, record.version_dir))
        identity = None if self.packages.remote is not None else _identity(path)
        if identity is not None or self.packages.remote is not None:
            if len(self._records) >= RECORD_CACHE_SIZE:
                self._records.clear()
            self._records[(name, version)] = (record, path, identity)
        return record

    async def _acquire(self, record: PackageRecord) -> Child:
        """A child of `record` with one call reserved on it, started if need be."""
        key: SlotKey = (record.dir_name, record.version_dir)
        deadline: float | None = None
        while True:
            if self._closing:
                raise ShuttingDown("the host is shutting down")
            child = self._pick(key, record)
            if child is not None:
                break
            now = time.monotonic()
            if deadline is None:
                deadline = now + self._pool.acquire_timeout_s
            remaining = deadline - now
            if remaining <= 0:
                retry = retry_after_s(self._pool.acquire_timeout_s)
                raise PoolExhausted(
                    f"all {self._pool.max_subprocess} plugin processes stayed busy for "
                    f"{self._pool.acquire_timeout_s} s",
                    data={"retry_after_s": retry},
                )
            with anyio.move_on_after(remaining):
                await self._wait_change()
        child.reserve()
        if child.ready:  # the hot path: no await, so no trip through the event loop
            return child
        try:
            with anyio.fail_after(self._pool.start_timeout_s + START_WAIT_MARGIN_S):
                await child.wait_ready()
        except TimeoutError:
            self._release(child)
            child.kill(StopCause.START_FAILED)
            raise PluginStartFailed(
                f"the plugin process of {record.name} {record.version} was not reported "
                f"started within {self._pool.start_timeout_s + START_WAIT_MARGIN_S} s"
            ) from None
        except BaseException:
            self._release(child)
            raise
        return child

    def _pick(self, key: SlotKey, record: PackageRecord) -> Child | None:
        """The child to use now, or None to wait for a change (synchronous: no races)."""
        current = fingerprint(record)
        serving = self._serving.get(key)
        if serving and not any(_worn_or_stale(c, record, current) for c in serving):
            return self._choose(key, record, serving)  # the usual case: nothing to retire
        for child in [c for c in serving or () if c.needs_replacement and c.usable]:
            self._replace_worn(child)  # it learnt of its abandoned thread after its last call
        self._retire_stale(key, current)
        serving = self._serving.get(key, [])
        if serving:
            return self._choose(key, record, serving)
        blocked = self._policy.blocked_for(key, time.monotonic())
        if blocked is not None:
            raise PluginUnavailable(
                f"{record.name} {record.version} crashed more than "
                f"{self._pool.restart_limit} times within {self._pool.restart_window_s} s; "
                f"it may start again in {blocked:.1f} s (or once reinstalled)",
                data={"retry_after_s": math.ceil(blocked)},
            )
        if self._has_room():
            return self._start(key, record)
        victim = choose_victim(self._live)
        if victim is not None:
            self._evictions += 1
            self._unserve(victim)
            victim.request_stop(StopCause.EVICTED)
        return None

    def _retire_stale(self, key: SlotKey, current: tuple[str, str, str]) -> None:
        """Children of `key` serving another build than `current`: no new calls; they drain."""
        stale = [c for c in self._serving.get(key, []) if c.fingerprint != current]
        if stale:
            self._forget(key)
            for child in stale:
                self._unserve(child)
                self._spawn_task(self._retire, child, StopCause.REPLACED)

    def _choose(self, key: SlotKey, record: PackageRecord, serving: list[Child]) -> Child:
        """Among the serving children of `key`: an idle one, else a new replica while there is
        room, else the one with the fewest calls in flight."""
        best = serving[0]
        for child in serving:
            if child.in_flight < best.in_flight:
                best = child
        if best.in_flight == 0 or len(serving) >= self._replicas(record):
            return best
        return self._start(key, record) if self._has_room() else best

    def _has_room(self) -> bool:
        return len(self._live) < self._pool.max_subprocess

    def _replicas(self, record: PackageRecord) -> int:
        count = self._replica_counts.get(record.name)
        if count is None:
            policy = self._pool.policy(record.name)
            count = policy.replicas if policy.replicas is not None else self._pool.replicas
            self._replica_counts[record.name] = count
        return count

    def _start(self, key: SlotKey, record: PackageRecord) -> Child:
        """Register a new child and start its supervisor (it becomes ready later)."""
        try:
            self._venvs.lease(record)
        except PluginUnavailable:
            self._records.clear()  # the record was stale: the next call reads it again
            raise
        taken = {c.replica for c in self._serving.get(key, [])}
        replica = next(i for i in range(len(taken) + 1) if i not in taken)
        slot = self._slots.setdefault((key, replica), _Slot())
        child = Child(
            record,
            replica=replica,
            spec=self._spec(record),
            config=self._pool,
            restarts=slot.restarts,
            last_exit_reason=slot.last_exit_reason,
        )
        self._live.add(child)
        self._serving.setdefault(key, []).append(child)
        self._starts += 1
        self._spawn_task(self._supervise, child)
        return child

    def _spec(self, record: PackageRecord) -> LaunchSpec:
        if self.config.plugin_storage.object_store and not has_s3_client(record.dependencies):
            log.warning(
                "%s %s was installed while plugin storage was local: its venv has no S3 "
                "client, so its saves fail with MissingDependency; reinstall it (--force)",
                record.name,
                record.version,
            )
        policy = self._pool.policy(record.name)
        python = self.packages.venv_python(record)
        data_dir = self.packages.data_dir(record)
        jail = self._jail
        if jail is not None:  # a jail shows them at their real paths, and no symlink to them
            python = python.parent.parent.resolve() / "bin" / python.name
            data_dir = data_dir.resolve()
        env = launcher.environment(
            self._pool,
            policy,
            name=record.name,
            version=record.version,
            venv_bin=python.parent,
            data_dir=data_dir,
            storage=self.config.plugin_storage,
            jailed=jail is not None,
        )
        writable: tuple[Path, ...] = ()
        shared = shared_storage_dir(self.config.plugin_storage, record.name)
        if jail is not None and shared is not None:  # the SDK's local saves go there
            shared.mkdir(parents=True, exist_ok=True)
            writable = (shared.resolve(),)
        argv = launcher.command(
            python,
            policy,
            host_is_root=self._host_is_root,
            jail=jail,
            data_dir=data_dir,
            writable=writable,
        )
        return LaunchSpec(
            argv=argv,
            env=env,
            cwd=data_dir,
            log_path=self.packages.log_path(record.name, record.version),
            jailed=jail is not None,
        )

    async def _supervise(self, child: Child) -> None:
        """Run a child to its end, then account for it."""
        try:
            await child.run()
        finally:
            self._live.discard(child)
            self._unserve(child)
            spawn = self._tg.start_soon if self._tg is not None else None
            self._venvs.release(child.record, (c.record for c in self._live), spawn)
            status = child.exit
            if status is not None:
                slot = self._slots.get((child.key, child.replica))
                if slot is not None:
                    slot.last_exit_reason = status.reason
                if status.cause in UNEXPECTED or status.cause in REPLACED_AFTER_A_CALL:
                    if slot is not None:
                        slot.restarts += 1
                    if status.cause in UNEXPECTED:
                        self._crashes += 1
                        self._policy.record_crash(child.key, time.monotonic())
            self._notify()

    def _release(self, child: Child) -> None:
        child.release()
        if child.needs_replacement and child.usable and not self._closing:
            self._replace_worn(child)
        if child.in_flight == 0:
            self._notify()

    def _replace_worn(self, child: Child) -> None:
        """No new calls for a child that abandoned a tool thread: it drains and stops, and the
        next call starts a fresh one."""
        self._unserve(child)
        child.begin_drain()
        self._spawn_task(self._retire, child, StopCause.THREAD_ABANDONED)

    def _unserve(self, child: Child) -> None:
        serving = self._serving.get(child.key)
        if serving is not None and child in serving:
            serving.remove(child)
            if not serving:
                del self._serving[child.key]

    def _spawn_task(self, func: Any, *args: Any) -> None:
        if self._tg is None:
            raise ShuttingDown("the pool is not running")
        self._tg.start_soon(func, *args)

    # ---- waiting -----------------------------------------------------------------------

    def _notify(self) -> None:
        """Wake everyone waiting for a slot, a drain or a death."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _wait_change(self) -> None:
        changed = self._changed = self._changed or anyio.Event()
        await changed.wait()

    async def _reap_idle(self) -> None:
        """Stop children idle for longer than `idle_timeout_s`."""
        idle_s = self._pool.idle_timeout_s
        while True:
            now = time.monotonic()
            next_due = now + min(idle_s, IDLE_SCAN_MAX_S)
            for child in list(self._live):
                if child.evictable:
                    due = child.last_used + idle_s
                    if due <= now:
                        self._idle_stops += 1
                        self._unserve(child)
                        child.request_stop(StopCause.IDLE)
                    else:
                        next_due = min(next_due, due)
            await anyio.sleep(max(0.0, next_due - time.monotonic()))

    # ---- introspection -----------------------------------------------------------------

    def snapshot(self) -> list[ProcessInfo]:
        """Every live child, by package, version and replica."""
        now = time.monotonic()
        infos = [
            ProcessInfo(
                package=c.record.name,
                version=c.record.version,
                pid=c.pid,
                state=c.state,
                uptime_s=round(now - c.started_at, 3),
                calls_in_flight=c.in_flight,
                calls_total=c.calls_total,
                restarts=c.restarts,
                rss_bytes=procfs.rss_bytes(c.pid),
                last_exit_reason=c.last_exit_reason,
                replica=c.replica,
                sandbox=self._sandbox_of(c),
                build=c.record.build,
            )
            for c in self._live
        ]
        return sorted(infos, key=lambda i: (i.package, i.version, i.replica, i.pid or 0))

    def _sandbox_of(self, child: Child) -> str:
        if self._jail is None:
            return "none"
        if self._pool.policy(child.record.name).network:
            return sandbox.MECHANISM
        return f"{sandbox.MECHANISM}, no network"

    def stats(self) -> PoolStats:
        busy = sum(1 for c in self._live if c.in_flight)
        return PoolStats(
            processes=len(self._live),
            busy=busy,
            idle=len(self._live) - busy,
            starts=self._starts,
            crashes=self._crashes,
            evictions=self._evictions,
            timeouts=self._timeouts,
            idle_stops=self._idle_stops,
            busy_poll_hits=self._busy.hits if self._busy is not None else 0,
            busy_poll_misses=self._busy.misses if self._busy is not None else 0,
        )


Identity = tuple[int, int, int]


def _identity(path: str) -> Identity | None:
    """A record file's identity (records are replaced whole: a new one is a new inode)."""
    try:
        st = os.stat(path)  # noqa: PTH116 (a str kept in the cache: no Path per call)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _worn_or_stale(child: Child, record: PackageRecord, current: tuple[str, str, str]) -> bool:
    """Whether `child` must be retired before a call picks among its slot's children."""
    if child.record is not record and child.fingerprint != current:
        return True
    return child.needs_replacement and child.usable


def _same(record: PackageRecord, name: str, version: str) -> bool:
    try:
        return canonicalize_name(record.name) == canonicalize_name(name) and Version(
            record.version
        ) == Version(version)
    except ValueError:  # InvalidVersion, or an int of too many digits
        return False
