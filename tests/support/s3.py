"""An S3-compatible server for tests: moto's standalone server on 127.0.0.1, a free port.

moto keeps its state per process, so the fixture resets it when it starts: every test sees
an empty store. `require_auth()` makes the server check request signatures, so unknown
credentials are refused as a real store refuses them.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any, Final

import boto3
import pytest
from moto.server import ThreadedMotoServer

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
