"""Fixtures for the multi-node tests: the job tests' real redis-server, API servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.support import Nodes
from tests.jobs.conftest import redis_server

__all__ = ["nodes", "redis_server"]


@pytest.fixture
def nodes(tmp_path: Path, wheelhouse: Path) -> Iterator[Nodes]:
    started = Nodes(tmp_path, wheelhouse)
    try:
        yield started
    finally:
        started.stop()
