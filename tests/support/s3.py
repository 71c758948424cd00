"""A real S3-compatible server for the tests: moto's standalone server on 127.0.0.1.

One `ThreadedMotoServer` per test session; each test gets a bucket of its own from the
`s3_server` fixture. moto keeps its objects in this process, so `stop()` then `start()`
(on the same port) models a store that went away and came back without losing anything.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.api.support import free_port

ACCESS_KEY: Final = "hiagent-test-access"
SECRET_KEY: Final = "hiagent-test-secret-do-not-log"
REGION: Final = "us-east-1"
# moto's server answers a connection within this after start() on a loaded machine.
START_TIMEOUT_S: Final = 30.0
POLL_S: Final = 0.02


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class S3Server:
    """The session's moto server; `bucket` belongs to the current test."""

    port: int
    bucket: str = ""
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION
    _server: ThreadedMotoServer | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (or restart) on the same port; returns once it accepts connections."""
        if self._server is not None:
            return
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        server.start()
        self._server = server
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _accepting(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto's S3 server did not start on port {self.port}")
            time.sleep(POLL_S)

    def stop(self) -> None:
        """Stop answering (connections are refused); the objects stay for `start()`."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def store_settings(self, **extra: Any) -> dict[str, Any]:
        """The `[store]` section of a runtime.toml for this server and bucket."""
        return {
            "backend": "s3",
            "endpoint_url": self.url,
            "bucket": self.bucket,
            "region": self.region,
            "access_key_id": self.access_key,
            "secret_access_key": self.secret_key,
            "path_style": True,
            "connect_timeout_s": 1.0,
            "read_timeout_s": 5.0,
            "max_attempts": 1,
        } | extra


@pytest.fixture(scope="session")
def _moto_server() -> Iterator[S3Server]:
    server = S3Server(port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_server(_moto_server: S3Server) -> S3Server:
    """The S3 server, running, with a fresh empty bucket for this test."""
    _moto_server.start()
    _moto_server.bucket = f"hiagent-{secrets.token_hex(6)}"
    _moto_server.client().create_bucket(Bucket=_moto_server.bucket)
    return _moto_server
