"""Fixtures for the multi-node tests: the job tests' real redis-server."""

from __future__ import annotations

from tests.jobs.conftest import redis_server

__all__ = ["redis_server"]
