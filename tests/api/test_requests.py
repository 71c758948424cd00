"""Request bodies: decoded against the route's Struct, size-capped while streaming, enveloped."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.api.support import LiveServer, envelope_error

pytestmark = pytest.mark.anyio

LIMIT = 1024 * 1024  # server.max_body_bytes in the test config


async def test_malformed_json_is_a_400_bad_request(app_client: httpx.AsyncClient) -> None:
    response = await app_client.post("/v1/GetPackageMetadata", content=b'{"pkg": ')
    assert response.status_code == 400
    assert envelope_error(response)["code"] == "BadRequest"


@pytest.mark.parametrize("body", [b"[1, 2]", b'"pkg"', b"3", b"null"])
async def test_a_body_that_is_not_an_object_is_a_422(
    app_client: httpx.AsyncClient, body: bytes
) -> None:
    response = await app_client.post("/v1/GetPackageMetadata", content=body)
    assert response.status_code == 422
    error = envelope_error(response)
    assert error["code"] == "InvalidRequest"
    assert error["data"] == {"field": None}


async def test_a_missing_key_is_a_422_naming_it(app_client: httpx.AsyncClient) -> None:
    response = await app_client.post("/v1/GetPackageMetadata", json={"pkg": "x"})
    assert response.status_code == 422
    assert envelope_error(response)["data"] == {"field": "version"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"pkg": "p", "version": "1", "plugin": "x", "tool": "t", "input": [1]}, "input"),
        ({"pkg": "p", "version": "1", "plugin": "x", "tool": "t", "stream": "yes"}, "stream"),
        ({"pkg": "p", "version": "1", "plugin": "x", "tool": "t", "timeout_s": 0}, "timeout_s"),
        ({"pkg": 3, "version": "1", "plugin": "x", "tool": "t"}, "pkg"),
        ({"pkg": "", "version": "1", "plugin": "x", "tool": "t"}, "pkg"),
    ],
)
async def test_a_wrong_type_or_value_is_a_422_naming_the_field(
    app_client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    response = await app_client.post("/v1/RunPluginTool", json=body)
    assert response.status_code == 422
    error = envelope_error(response)
    assert (error["code"], error["data"]["field"]) == ("InvalidRequest", field)


async def test_unknown_keys_are_ignored(app_client: httpx.AsyncClient) -> None:
    response = await app_client.post(
        "/v1/GetPackageMetadata", json={"pkg": "absent", "version": "1.0", "extra": {"a": 1}}
    )
    assert response.status_code == 404
    assert envelope_error(response)["code"] == "PackageNotFound"


async def test_an_empty_body_counts_as_an_empty_object(app_client: httpx.AsyncClient) -> None:
    response = await app_client.post("/v1/ListPackages", content=b"")
    assert response.json() == {"data": [], "error": None}


async def test_a_body_over_the_limit_is_a_413_with_a_content_length(
    app_client: httpx.AsyncClient,
) -> None:
    response = await app_client.post("/v1/ListPackages", content=b" " * (LIMIT + 1))
    assert response.status_code == 413
    assert envelope_error(response)["code"] == "PayloadTooLarge"


async def test_a_chunked_body_over_the_limit_is_a_413(app_client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * (LIMIT // 10)

    response = await app_client.post("/v1/ListPackages", content=chunks())
    assert response.status_code == 413
    assert envelope_error(response)["code"] == "PayloadTooLarge"


async def test_a_body_at_the_limit_is_accepted(app_client: httpx.AsyncClient) -> None:
    body = b"{}" + b" " * (LIMIT - 2)
    response = await app_client.post("/v1/ListPackages", content=body)
    assert response.status_code == 200


async def test_unknown_routes_and_methods_keep_plain_404_and_405(
    app_client: httpx.AsyncClient,
) -> None:
    assert (await app_client.post("/v1/NoSuchRoute", json={})).status_code == 404
    assert (await app_client.get("/v1/ListPackages")).status_code == 405


def _raw_exchange(server: LiveServer, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks: list[bytes] = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def test_a_content_length_that_understates_the_body_does_not_lift_the_limit(
    app_client: httpx.AsyncClient,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b" " * LIMIT

    response = await app_client.post(
        "/v1/ListPackages", content=chunks(), headers={"Content-Length": "2"}
    )
    assert response.status_code == 413
    assert envelope_error(response)["code"] == "PayloadTooLarge"


def test_a_chunked_body_without_content_length_over_the_limit_is_a_413_on_the_wire(
    server: LiveServer,
) -> None:
    body = b" " * (LIMIT + 4096)
    request = (
        b"POST /v1/ListPackages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in _parts(body, 65536))
        + b"0\r\n\r\n"
    )
    reply = _raw_exchange(server, request)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"PayloadTooLarge"' in reply


def _parts(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_413_leaves_the_server_serving_on_the_same_connection(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        big = http.post("/v1/ListPackages", content=b" " * (LIMIT * 2))
        assert big.status_code == 413
        assert http.post("/v1/ListPackages", json={}).status_code == 200


@pytest.mark.parametrize("body", [b"1\tc", b"[1, 2] x", b'"pkg" {'])
async def test_a_body_that_is_malformed_after_a_valid_start_is_a_400(
    app_client: httpx.AsyncClient, body: bytes
) -> None:
    response = await app_client.post("/v1/GetPackageMetadata", content=body)
    assert response.status_code == 400
    assert envelope_error(response)["code"] == "BadRequest"
