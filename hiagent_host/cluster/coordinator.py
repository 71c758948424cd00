"""The cluster-wide install lock and change announcements, on Redis (blocking calls).

Installs and deletes of one package are serialised across every node by a Redis lock
(redis-py's `Lock`: a key with an expiry, released only by its owner's token). The holder
renews it every `LOCK_RENEW_S` from a helper thread, so a venv build of any length keeps it,
while a node that dies lets it go within `LOCK_TTL_S`. A committed change is announced on the
queue's package channel as `{"node", "dir_name", "version_dir"}`; every node reads the
version again (see `watch.py`). Both run in the installing thread, never on an event loop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Final

import redis as redis_sync
from redis.exceptions import LockError, RedisError

from hiagent_host.config import Config, redact_url
from hiagent_host.errors import QUEUE_UNAVAILABLE, HostError
from hiagent_host.jobs import keys
from hiagent_host.jobs.connection import connect_sync
from hiagent_host.packages import Cancelled, PackageBusy

log = logging.getLogger(__name__)

# A lock whose holder stopped renewing it (the node died) expires after this long.
LOCK_TTL_S: Final = 30
# The holder renews it this often: well within the TTL, so one slow renewal is harmless.
LOCK_RENEW_S: Final = 10.0
# A waiting install re-checks its cancel event and its deadline this often.
LOCK_SLICE_S: Final = 0.2
# Beyond the longest a peer's venv build plus probe may take, a held lock means trouble.
LOCK_MARGIN_S: Final = 30.0


class RedisCoordinator:
    """`packages.coordinator.Coordinator` on Redis, for one node (`node_id`)."""

    def __init__(self, config: Config, node_id: str) -> None:
        self.config = config
        self.node_id = node_id
        self._queue_name = config.queue.queue_name
        self._redis: redis_sync.Redis = connect_sync(config.queue)

    def __repr__(self) -> str:
        return f"RedisCoordinator({redact_url(self.config.queue.redis_url)!r})"

    @contextlib.contextmanager
    def lock(self, dir_name: str, cancel: threading.Event | None) -> Iterator[None]:
        """Hold the package's cluster-wide lock; PackageBusy after a bounded wait."""
        cfg = self.config.packages
        wait_s = cfg.install_timeout_s + cfg.probe_timeout_s + LOCK_MARGIN_S
        deadline = time.monotonic() + wait_s
        lock = self._redis.lock(
            keys.package_lock(self._queue_name, dir_name),
            timeout=LOCK_TTL_S,
            sleep=LOCK_SLICE_S / 4,
            thread_local=False,  # the renewing thread extends it with the same token
        )
        try:
            while not lock.acquire(blocking=True, blocking_timeout=LOCK_SLICE_S):
                if cancel is not None and cancel.is_set():
                    raise Cancelled("install cancelled while waiting for the cluster lock")
                if time.monotonic() > deadline:
                    raise PackageBusy(
                        f"{dir_name} stayed locked by another node's install or delete "
                        f"for {wait_s:.0f} s",
                        data={"package": dir_name},
                    )
        except RedisError as exc:
            raise self._unavailable("take the package's cluster lock", exc) from exc
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(lock, stop, dir_name), name=f"hiagent-lock-{dir_name}"
        )
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            try:
                lock.release()
            except (LockError, RedisError) as exc:  # it expires on its own
                log.warning("cluster lock of %s: release failed: %s", dir_name, exc)

    def _renew(self, lock: redis_sync.lock.Lock, stop: threading.Event, dir_name: str) -> None:
        while not stop.wait(LOCK_RENEW_S):
            try:
                lock.extend(LOCK_TTL_S, replace_ttl=True)
            except (LockError, RedisError) as exc:
                log.warning("cluster lock of %s: renewal failed: %s", dir_name, exc)

    def announce(self, dir_name: str, version_dir: str) -> None:
        """Publish a committed change to every node (they read the version again)."""
        message = json.dumps(
            {"node": self.node_id, "dir_name": dir_name, "version_dir": version_dir}
        )
        try:
            self._redis.publish(keys.package_changes(self._queue_name), message)
        except RedisError as exc:
            raise self._unavailable("announce a package change", exc) from exc

    def close(self) -> None:
        self._redis.close()

    def _unavailable(self, action: str, exc: Exception) -> HostError:
        url = redact_url(self.config.queue.redis_url)
        return HostError(
            f"cannot {action}: Redis at {url} is unavailable ({exc})",
            code=QUEUE_UNAVAILABLE,
            http_status=503,
            data={"retry_after_s": 5},
        )
