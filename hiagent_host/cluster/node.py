"""One node of a deployment: it hears of package changes, says it is there, reports both.

`ClusterNode` runs for as long as an API server or an install worker runs:
- with Redis (`[queue] backend = "redis"`): it listens on the package channel and has the
  package manager read each announced version again (the pool's listener drains what went
  stale; old builds go once nobody runs from them); after every (re)subscription, and every
  `RESYNC_S`, it compares its whole view with the truth, so a missed message costs at most
  that long. It writes a heartbeat and checks the other nodes (`nodes.py`).
- without Redis: it compares its view with the truth every `[store] poll_interval_s`.
A warm call never touches any of this: the view is in memory and the changes arrive here.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from types import TracebackType
from typing import Any, Final, Literal, Self

import anyio
import anyio.abc
import anyio.to_thread
import msgspec
from redis.exceptions import RedisError

from hiagent_host.cluster.nodes import (
    NODE_FORGET_S,
    NODE_HEARTBEAT_S,
    NODE_TTL_S,
    Materialised,
    NodeInfo,
    problems,
    share_id,
    store_identity,
)
from hiagent_host.config import Config, redact_url
from hiagent_host.errors import HostError
from hiagent_host.jobs import keys
from hiagent_host.jobs.connection import Commands, connect
from hiagent_host.packages import PackageManager

log = logging.getLogger(__name__)

# With Redis, the whole view is compared with the truth this often besides every message.
RESYNC_S: Final = 60.0
# The listener wakes this often to check whether a resync is due.
LISTEN_SLICE_S: Final = 1.0
# After Redis trouble the listener subscribes again after a backoff within these bounds.
RECONNECT_MIN_S: Final = 0.2
RECONNECT_MAX_S: Final = 5.0
# /v1/health asks the store whether it answers, for at most this long.
STORE_CHECK_TIMEOUT_S: Final = 2.0

Role = Literal["api", "worker"]


class ClusterNode:
    """This process as a node of the deployment; see the module docstring."""

    def __init__(
        self, config: Config, packages: PackageManager, *, node_id: str, role: Role
    ) -> None:
        self.config = config
        self.packages = packages
        self.node_id = node_id
        self.role = role
        self._share_id = share_id(config.paths.state_dir)
        self._redis: Commands | None = (
            connect(config.queue, role="api") if config.queue.backend == "redis" else None
        )
        self.problems: list[str] = []
        self.nodes: list[NodeInfo] = []
        self.last_sync_error: str | None = None
        self._key_locks: dict[tuple[str, str], anyio.Lock] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> Self:
        await self._sync()  # the view is loaded before the first call is served
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        if self._redis is not None:
            self._tg.start_soon(self._listen, self._redis)
            self._tg.start_soon(self._heartbeat, self._redis)
        else:
            self._tg.start_soon(self._poll)
        if self.config.store.materialise_at_start and self.role == "api":
            self._tg.start_soon(self._materialise_all)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
            self._tg = None
        if self._redis is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                try:
                    await self._redis.hdel(keys.nodes(self.config.queue.queue_name), self.node_id)
                except (RedisError, OSError):
                    pass  # the heartbeat ages out on its own
            await self._redis.aclose()

    # ---- changes -----------------------------------------------------------------------

    async def _sync(self) -> None:
        try:
            await anyio.to_thread.run_sync(self.packages.sync)
        except HostError as exc:
            if self.last_sync_error != exc.message:
                log.warning("cannot compare this node's packages with the truth: %s", exc.message)
            self.last_sync_error = exc.message
        else:
            self.last_sync_error = None

    async def _poll(self) -> None:
        while True:
            await anyio.sleep(self.config.store.poll_interval_s)
            await self._sync()

    async def _listen(self, redis: Commands) -> None:
        channel = keys.package_changes(self.config.queue.queue_name)
        url = redact_url(self.config.queue.redis_url)
        backoff_s = RECONNECT_MIN_S
        while True:
            pubsub = redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                await self._sync()  # whatever was announced while we were not listening
                backoff_s = RECONNECT_MIN_S
                resync_at = time.monotonic() + RESYNC_S
                while True:
                    message = await pubsub.get_message(timeout=LISTEN_SLICE_S)
                    if message is not None:
                        self._on_message(message.get("data"))
                    if time.monotonic() >= resync_at or self.last_sync_error is not None:
                        resync_at = time.monotonic() + RESYNC_S
                        await self._sync()
            except (RedisError, OSError) as exc:
                log.warning("package changes: Redis at %s failed (%s); listening again", url, exc)
                await anyio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, RECONNECT_MAX_S)
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                    await pubsub.aclose()

    def _on_message(self, data: Any) -> None:
        try:
            change = json.loads(data)
            node, dir_name, version_dir = change["node"], change["dir_name"], change["version_dir"]
        except (TypeError, ValueError, KeyError):
            log.warning("ignoring a malformed package change message")
            return
        if node == self.node_id or self._tg is None:
            return  # this node made the change and has applied it already
        self._tg.start_soon(self._refresh, str(dir_name), str(version_dir))

    async def _refresh(self, dir_name: str, version_dir: str) -> None:
        """Apply one change; changes of one version are applied one after another."""
        key = (dir_name, version_dir)
        lock = self._key_locks.setdefault(key, anyio.Lock())
        try:
            async with lock:
                await anyio.to_thread.run_sync(self.packages.refresh, dir_name, version_dir)
                await self._keep_materialised(key)
        except HostError as exc:  # e.g. the store is down: the next resync catches up
            log.warning("cannot apply the change of %s %s: %s", dir_name, version_dir, exc.message)
            self.last_sync_error = exc.message
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._key_locks.pop(key, None)

    async def _keep_materialised(self, key: tuple[str, str]) -> None:
        """With `materialise_at_start`, a version installed or replaced elsewhere is
        materialised here as soon as this node hears of it, not on its first call."""
        remote = self.packages.remote
        if remote is None or self.role != "api" or not self.config.store.materialise_at_start:
            return
        record = remote.find_key(key)
        if record is None or remote.is_materialised(record):
            return
        try:
            await anyio.to_thread.run_sync(self.packages.materialise, record)
        except HostError as exc:  # its first call tries again
            log.warning("materialise %s %s: %s", record.name, record.version, exc.message)

    async def _materialise_all(self) -> None:
        """`[store] materialise_at_start`: every installed version, one after another."""
        for record in await anyio.to_thread.run_sync(self.packages.list):
            if self.packages.is_materialised(record):
                continue
            try:
                await anyio.to_thread.run_sync(self.packages.materialise, record)
            except HostError as exc:
                log.warning(
                    "materialise at start: %s %s: %s", record.name, record.version, exc.message
                )

    # ---- nodes -------------------------------------------------------------------------

    def me(self) -> NodeInfo:
        return NodeInfo(
            node=self.node_id,
            role=self.role,
            host=socket.gethostname(),
            pid=os.getpid(),
            backend=self.config.store.backend,
            store=store_identity(self.config, self._share_id),
            materialised=self.materialised(),
            seen_ms=int(time.time() * 1000),
        )

    def materialised(self) -> list[Materialised]:
        """What this node can run without building anything."""
        remote = self.packages.remote
        if remote is None:
            return [Materialised(r.name, r.version, r.build) for r in self.packages.list_local()]
        return [
            Materialised(r.name, r.version, r.build)
            for r in remote.records()
            if remote.is_materialised(r)
        ]

    async def _heartbeat(self, redis: Commands) -> None:
        key = keys.nodes(self.config.queue.queue_name)
        while True:
            try:
                me = await anyio.to_thread.run_sync(self.me)
                await redis.hset(key, self.node_id, msgspec.json.encode(me))
                raw = await redis.hgetall(key)
                self._read_nodes(me, raw)
                stale = [n for n, info in raw.items() if _age_s(info) > NODE_FORGET_S]
                if stale:
                    await redis.hdel(key, *stale)
            except (RedisError, OSError) as exc:
                log.debug("node heartbeat failed: %s", exc)
            await anyio.sleep(NODE_HEARTBEAT_S)

    def _read_nodes(self, me: NodeInfo, raw: dict[bytes, bytes]) -> None:
        live: list[NodeInfo] = []
        for data in raw.values():
            try:
                info = msgspec.json.decode(data, type=NodeInfo)
            except msgspec.DecodeError:
                continue
            if me.seen_ms - info.seen_ms <= NODE_TTL_S * 1000:
                live.append(info)
        self.nodes = sorted(live, key=lambda n: n.node)
        found = problems(me, [n for n in live if n.node != self.node_id])
        for problem in sorted(set(found) - set(self.problems)):
            log.error("cluster misconfigured: %s", problem)
        self.problems = found

    # ---- health ------------------------------------------------------------------------

    async def report(self) -> dict[str, Any]:
        """This node, its store, what it has materialised, the other nodes, and problems."""
        store: dict[str, Any] = {"backend": self.config.store.backend, "ok": True}
        remote = self.packages.remote
        if remote is not None:
            store["store"] = remote.store.identity
            store["integrity_failures"] = dict(remote.integrity_failures)
            reason = await _check_store(remote.store.check)
            if reason is not None:
                store |= {"ok": False, "reason": reason}
        return {
            "node": self.node_id,
            "role": self.role,
            "store": store,
            "materialised": msgspec.to_builtins(await anyio.to_thread.run_sync(self.materialised)),
            "nodes": [
                {
                    "node": n.node,
                    "role": n.role,
                    "backend": n.backend,
                    "materialised": msgspec.to_builtins(n.materialised),
                }
                for n in self.nodes
            ],
            "problems": list(self.problems),
        }


async def _check_store(check: Any) -> str | None:
    try:
        with anyio.fail_after(STORE_CHECK_TIMEOUT_S):
            await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
    except TimeoutError:
        return f"no answer within {STORE_CHECK_TIMEOUT_S} s"
    except HostError as exc:
        return f"{exc.code}: {exc.message}"
    return None


def _age_s(data: bytes) -> float:
    try:
        info = msgspec.json.decode(data, type=NodeInfo)
    except msgspec.DecodeError:
        return float("inf")
    return time.time() - info.seen_ms / 1000
