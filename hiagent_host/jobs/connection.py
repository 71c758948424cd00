"""Every Redis client of the host: one server or a Sentinel-managed master; fail fast on the
API side, ride out blips in workers.

`redis_client` is the one place a Redis client is built (the arq queue uses `connect`, which
adds arq's settings) and `close` the one way to let go of it. `[queue] redis_url` is checked
by `load_config` (see `config_redis`): a single server (`redis://`, `rediss://`, `unix://`)
is reached directly; a Sentinel URL (`redis+sentinel://`) gives a client whose connections
ask the Sentinels for the current master, so after a failover the next connection goes to
the new master (a connection to a demoted master fails with a retryable error and is
replaced). Cluster is refused at start-up.

The API side must answer `QueueUnavailable` within `queue.connect_timeout_s` when Redis is
down or hung, and recover by itself when it returns: every socket operation is bounded by that
timeout and a dropped pooled connection is retried once, immediately, on a fresh one. A worker
instead retries with backoff for a while, so a short Redis restart (or a failover) does not
disturb the installs it is running.
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypeAlias, TypeVar

import redis as redis_sync
from arq.connections import ArqRedis
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry as SyncRetry
from redis.sentinel import Sentinel as SyncSentinel

from hiagent_host.config import QueueConfig
from hiagent_host.config_redis import (
    SENTINEL_SCHEMES,
    SentinelTarget,
    parse_sentinel_url,
    scheme,
)
from hiagent_host.jobs import codec

# API side: one immediate retry replaces a pooled connection that Redis closed.
API_RETRIES: Final = 1
# Worker side: a command retries for roughly a minute (backoff capped at 2 s) before the
# worker's poll loop gives up on it and starts over.
WORKER_RETRIES: Final = 30
WORKER_BACKOFF_BASE_S: Final = 0.05
WORKER_BACKOFF_CAP_S: Final = 2.0
# Errors after which a command is retried on a fresh connection (a demoted master's
# READONLY answer reaches here as a ConnectionError from the Sentinel connection).
RETRY_ON: Final = [RedisConnectionError, RedisTimeoutError, ConnectionError, OSError]
# Worker side: no command arq or the job function sends should take longer than this.
WORKER_SOCKET_TIMEOUT_S: Final = 30.0

# redis-py types its async commands as `Awaitable[T] | T` unions that mypy cannot await;
# command call sites use this alias, the arq API keeps its real type.
Commands: TypeAlias = Any
R = TypeVar("R", bound=Redis)


def redis_client(queue: QueueConfig, *, role: Literal["api", "worker"], redis_class: type[R]) -> R:
    """A `redis_class` client for `queue.redis_url` with the role's timeouts and retries. No
    I/O happens until the first command."""
    if role == "api":
        retry = Retry(NoBackoff(), API_RETRIES)
        socket_timeout_s = queue.connect_timeout_s
    else:
        backoff = ExponentialBackoff(WORKER_BACKOFF_CAP_S, WORKER_BACKOFF_BASE_S)
        retry = Retry(backoff, WORKER_RETRIES)
        socket_timeout_s = WORKER_SOCKET_TIMEOUT_S
    options: dict[str, Any] = {
        "socket_connect_timeout": queue.connect_timeout_s,
        "socket_timeout": socket_timeout_s,
        "retry": retry,
        "retry_on_error": RETRY_ON,
    }
    if scheme(queue.redis_url) not in SENTINEL_SCHEMES:
        single: R = redis_class.from_url(queue.redis_url, **options)
        return single
    target = parse_sentinel_url(queue.redis_url)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        target.sentinels, **_sentinel_options(queue, target, options)
    )
    managed: R = sentinel.master_for(target.master, redis_class=redis_class)
    return managed


def _sentinel_options(
    queue: QueueConfig, target: SentinelTarget, options: dict[str, Any]
) -> dict[str, Any]:
    """What both Sentinel clients (async and blocking) are built with: the master's
    credentials, db and TLS, the Sentinels' own settings, and the caller's socket options."""
    return {
        "sentinel_kwargs": _sentinel_kwargs(queue, target),
        "username": target.username,
        "password": target.password,
        "db": target.db,
        "ssl": target.ssl,
        **options,
    }


def connect(queue: QueueConfig, *, role: Literal["api", "worker"]) -> ArqRedis:
    """The arq queue's client (see `redis_client`), storing jobs with our codec."""
    redis = redis_client(queue, role=role, redis_class=ArqRedis)
    redis.job_serializer = codec.dumps
    redis.job_deserializer = codec.loads
    redis.default_queue_name = queue.queue_name
    return redis


async def close(redis: Redis) -> None:
    """Close a client of `redis_client`, and the connections it made to ask the Sentinels."""
    await redis.aclose()
    pool = redis.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose()


def connect_sync(queue: QueueConfig) -> redis_sync.Redis:
    """A blocking client for `queue.redis_url` (a single server or Sentinel, like
    `redis_client`) with the API side's fail-fast bounds, for code that runs in worker
    threads: the cluster's install lock and change announcements."""
    options: dict[str, Any] = {
        "socket_connect_timeout": queue.connect_timeout_s,
        "socket_timeout": queue.connect_timeout_s,
        "retry": SyncRetry(NoBackoff(), API_RETRIES),
        "retry_on_error": RETRY_ON,
    }
    if scheme(queue.redis_url) not in SENTINEL_SCHEMES:
        single: redis_sync.Redis = redis_sync.Redis.from_url(queue.redis_url, **options)
        return single
    target = parse_sentinel_url(queue.redis_url)
    sentinel = SyncSentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        target.sentinels, **_sentinel_options(queue, target, options)
    )
    managed: redis_sync.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        target.master, redis_class=redis_sync.Redis
    )
    return managed


def _sentinel_kwargs(queue: QueueConfig, target: Any) -> dict[str, Any]:
    """How to ask the Sentinels (their own credentials, the API side's timeouts)."""
    return {
        "username": target.sentinel_username,
        "password": target.sentinel_password,
        "socket_connect_timeout": queue.connect_timeout_s,
        "socket_timeout": queue.connect_timeout_s,
    }
