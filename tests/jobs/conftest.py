"""Fixtures for the job tests: a real redis-server, a stalling find-links server, workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.jobs.helpers import RedisServer, StallServer, WorkerProcess


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis(redis_server: RedisServer) -> RedisServer:
    """The session's redis-server, running and empty."""
    redis_server.resume()
    redis_server.start()
    redis_server.flush()
    return redis_server


@pytest.fixture
def stall() -> Iterator[StallServer]:
    server = StallServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[Path], WorkerProcess]]:
    """Start worker processes from a config file; all are stopped at the end of the test."""
    workers: list[WorkerProcess] = []

    def start(config_path: Path) -> WorkerProcess:
        worker = WorkerProcess(config_path, tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            worker.stop()
