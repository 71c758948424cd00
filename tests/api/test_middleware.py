"""The request context: X-Request-ID and X-Process-Time on every response, one access-log line."""

from __future__ import annotations

import logging

import httpx
import pytest

pytestmark = pytest.mark.anyio


async def test_a_sane_request_id_is_echoed(app_client: httpx.AsyncClient) -> None:
    response = await app_client.get("/ping", headers={"X-Request-ID": "client-abc.123"})
    assert response.headers["x-request-id"] == "client-abc.123"


@pytest.mark.parametrize("sent", [None, b"has spaces in it", b"x" * 200, "ünïcode".encode()])
async def test_a_missing_or_odd_request_id_is_replaced_by_a_new_one(
    app_client: httpx.AsyncClient, sent: bytes | None
) -> None:
    headers = {} if sent is None else {b"X-Request-ID": sent}
    response = await app_client.get("/ping", headers=headers)
    generated = response.headers["x-request-id"]
    assert len(generated) == 32
    assert int(generated, 16) >= 0


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/ping"), ("POST", "/v1/ListPackages"), ("GET", "/nowhere")]
)
async def test_every_response_carries_both_headers(
    app_client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await app_client.request(method, path, json={} if method == "POST" else None)
    assert response.headers["x-request-id"]
    assert float(response.headers["x-process-time"]) >= 0


async def test_the_access_log_line_cannot_be_split_by_caller_text(
    app_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    call = {"pkg": "evil\nFORGED 200 line", "version": "1.0", "plugin": "p\r\nq", "tool": "t"}
    with caplog.at_level(logging.INFO, logger="hiagent_host.access"):
        await app_client.post("/v1/RunPluginTool", json=call)
    [record] = [r for r in caplog.records if r.name == "hiagent_host.access"]
    line = record.getMessage()
    assert "\n" not in line
    assert "\r" not in line
    assert "pkg=evil?FORGED 200 line" in line
    assert record.access["pkg"] == "evil\nFORGED 200 line"  # type: ignore[attr-defined]
