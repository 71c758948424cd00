"""Asynchronous installs behind one interface: a local backend and an arq/Redis backend.

`make_backend(config, packages)` picks the backend `[queue] backend` names; enter it once per
server process. `run_worker(config)` is `hiagent-host worker`. See docs/queue.md.
"""

from __future__ import annotations

from hiagent_host.config import Config
from hiagent_host.jobs.local import LocalBackend
from hiagent_host.jobs.model import (
    Installer,
    JobBackend,
    JobInfo,
    JobStatus,
    QueueHealth,
)
from hiagent_host.jobs.redis_backend import RedisBackend
from hiagent_host.jobs.worker import run_worker

__all__ = [
    "Installer",
    "JobBackend",
    "JobInfo",
    "JobStatus",
    "LocalBackend",
    "QueueHealth",
    "RedisBackend",
    "make_backend",
    "run_worker",
]


def make_backend(
    config: Config, packages: Installer, *, with_worker: bool | None = None
) -> JobBackend:
    """The configured backend. `with_worker` (redis only) overrides `[queue] with_worker`."""
    if config.queue.backend == "redis":
        worker = config.queue.with_worker if with_worker is None else with_worker
        return RedisBackend(config, packages, with_worker=worker)
    return LocalBackend(config, packages)
