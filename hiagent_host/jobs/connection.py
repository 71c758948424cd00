"""Redis connections for the queue: fail fast on the API side, ride out blips in workers.

The API side must answer `QueueUnavailable` within `queue.connect_timeout_s` when Redis is
down or hung, and recover by itself when it returns: every socket operation is bounded by that
timeout and a dropped pooled connection is retried once, immediately, on a fresh one. A worker
instead retries with backoff for a while, so a short Redis restart does not disturb the
installs it is running.
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypeAlias

import redis as redis_sync
from arq.connections import ArqRedis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry as SyncRetry

from hiagent_host.config import QueueConfig
from hiagent_host.jobs import codec

# API side: one immediate retry replaces a pooled connection that Redis closed.
API_RETRIES: Final = 1
# Worker side: a command retries for roughly a minute (backoff capped at 2 s) before the
# worker's poll loop gives up on it and starts over.
WORKER_RETRIES: Final = 30
WORKER_BACKOFF_BASE_S: Final = 0.05
WORKER_BACKOFF_CAP_S: Final = 2.0
# Worker side: no command arq or the job function sends should take longer than this.
WORKER_SOCKET_TIMEOUT_S: Final = 30.0

# redis-py types its async commands as `Awaitable[T] | T` unions that mypy cannot await;
# command call sites use this alias, the arq API keeps its real type.
Commands: TypeAlias = Any


def connect(queue: QueueConfig, *, role: Literal["api", "worker"]) -> ArqRedis:
    """A client for `queue.redis_url` (redis://, rediss://, unix://; password and db in the
    URL). No I/O happens until the first command."""
    if role == "api":
        retry = Retry(NoBackoff(), API_RETRIES)
        socket_timeout_s = queue.connect_timeout_s
    else:
        backoff = ExponentialBackoff(WORKER_BACKOFF_CAP_S, WORKER_BACKOFF_BASE_S)
        retry = Retry(backoff, WORKER_RETRIES)
        socket_timeout_s = WORKER_SOCKET_TIMEOUT_S
    redis: ArqRedis = ArqRedis.from_url(
        queue.redis_url,
        socket_connect_timeout=queue.connect_timeout_s,
        socket_timeout=socket_timeout_s,
        retry=retry,
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionError, OSError],
    )
    redis.job_serializer = codec.dumps
    redis.job_deserializer = codec.loads
    redis.default_queue_name = queue.queue_name
    return redis


def connect_sync(queue: QueueConfig) -> redis_sync.Redis:
    """A blocking client for `queue.redis_url`, with the API side's fail-fast bounds, for
    code that runs in worker threads (the cluster's install lock and change announcements).
    The same URL and timeouts as `connect`: one place decides how Redis is reached."""
    client: redis_sync.Redis = redis_sync.Redis.from_url(
        queue.redis_url,
        socket_connect_timeout=queue.connect_timeout_s,
        socket_timeout=queue.connect_timeout_s,
        retry=SyncRetry(NoBackoff(), API_RETRIES),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionError, OSError],
    )
    return client
