"""Fixtures for the multi-node tests: a real redis-server for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.jobs.helpers import RedisServer


@pytest.fixture(scope="module")
def cluster_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
