"""S3-compatible servers for tests: moto's standalone server on 127.0.0.1.

moto keeps its state per process, so the fixture resets it when it starts: every test sees
an empty store. `require_auth()` makes the server check request signatures, so unknown
credentials are refused as a real store refuses them.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.api.support import free_port

# Credentials the server accepts while it does not check signatures.
ACCESS_KEY: Final = "testing-ak"
SECRET_KEY: Final = "testing-sk"
REGION: Final = "us-east-1"
# moto's control API answers at once: a request to it that takes longer is a failure.
CONTROL_TIMEOUT_S: Final = 10.0


class S3Server:
    """moto's S3 server, running in this process's threads."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.running = False

    def start(self) -> None:
        self._server.start()
        self.running = True
        self._control("reset", b"")

    def stop(self) -> None:
        if self.running:
            self._server.stop()
            self.running = False

    @property
    def endpoint(self) -> str:
        host, port = self._server.get_host_and_port()
        return f"http://{host}:{port}"

    def client(self) -> Any:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def make_public(self, bucket: str) -> None:
        """Let anyone read the bucket's objects (what a `public_endpoint` serves)."""
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/*",
                }
            ],
        }
        self.client().put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))

    def require_auth(self) -> None:
        """From now on every request must be signed with a key the server knows."""
        self._control("reset-auth", b"0")

    def open_auth(self) -> None:
        """Stop checking signatures again (the default)."""
        self._control("reset-auth", b"inf")

    def _control(self, what: str, body: bytes) -> None:
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/{what}", data=body, headers={"Content-Type": "text/plain"}
        )
        with urllib.request.urlopen(request, timeout=CONTROL_TIMEOUT_S) as response:
            response.read()


@pytest.fixture
def s3_server() -> Iterator[S3Server]:
    """A started, empty S3 server on 127.0.0.1; stopped (signatures unchecked) afterwards."""
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        if server.running:
            server.open_auth()
        server.stop()


# ---- the packages store's server (issue 13) ---------------------------------------------
# One `ThreadedMotoServer` per session on a fixed port; each test gets a bucket of its own
# from `packages_s3`. moto keeps its objects in this process, so `stop()` then `start()` (on
# the same port) models a store that went away and came back without losing anything.
# (`s3_server` above resets moto's state when it starts: never used inside these tests.)

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
class PackagesS3:
    """The session's moto server; `bucket` belongs to the current test."""

    port: int
    bucket: str = ""
    access_key: str = "hiagent-test-access"
    secret_key: str = "hiagent-test-secret-do-not-log"
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
def _packages_moto() -> Iterator[PackagesS3]:
    server = PackagesS3(port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def packages_s3(_packages_moto: PackagesS3) -> PackagesS3:
    """The packages store's S3 server, running, with a fresh empty bucket for this test."""
    _packages_moto.start()
    _packages_moto.bucket = f"hiagent-{secrets.token_hex(6)}"
    _packages_moto.client().create_bucket(Bucket=_packages_moto.bucket)
    return _packages_moto
