"""The request context: X-Request-ID and X-Process-Time on every response, one access-log line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re

import anyio
import httpx
import pytest

from hiagent_host import logs
from hiagent_host.config import LoggingConfig

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


def test_the_server_writes_access_lines_as_its_formatter_would() -> None:
    """`configure` makes access lines straight from the fields (no LogRecord): the same line
    a record would give, masked, control characters replaced; lines logged together on the
    loop leave together, soon after."""
    extra = {
        "pkg": "evil\nFORGED",
        "tool": "Bearer sk-live-token-1",
        "plugin": "uses the-api-key-123",
    }
    for as_json in (False, True):
        stream = _Written()
        handler = logs.configure(
            LoggingConfig(json=as_json), keys=["the-api-key-123"], stream=stream
        )
        try:
            assert asyncio.run(_two_lines_in_one_turn(extra, stream)) == ""
        finally:
            logging.getLogger().removeHandler(handler)
        lines = stream.getvalue().splitlines()
        assert len(lines) == 2
        assert "sk-live-token-1" not in stream.getvalue()
        assert "the-api-key-123" not in stream.getvalue()
        if as_json:
            line = json.loads(lines[0])
            assert line["logger"] == "hiagent_host.access"
            assert line["level"] == "info"
            assert line["pkg"] == "evil\nFORGED"
            assert line["message"].startswith("POST /v1/RunPluginTool 200 0.0013s ")
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])
        else:
            assert re.fullmatch(
                r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO    hiagent_host.access: "
                r"POST /v1/RunPluginTool 200 0\.0013s request_id=r-1 pkg=evil\?FORGED "
                r"tool=Bearer \*\*\* plugin=uses \*\*\*",
                lines[0],
            ), lines[0]


async def _two_lines_in_one_turn(extra: dict[str, str], stream: _Written) -> str:
    """Log two lines; what was written before the batch left (then wait for it to leave)."""
    stream.written = asyncio.Event()
    logs.access("POST", "/v1/RunPluginTool", 200, 0.00125, "r-1", None, extra)
    logs.access("POST", "/v1/RunPluginTool", 200, 0.00125, "r-2", ("127.0.0.1", 5), extra)
    before = stream.getvalue()
    with anyio.fail_after(5):
        await stream.written.wait()
    return before


class _Written(io.StringIO):
    """A stream that tells when it is written to."""

    written: asyncio.Event | None = None

    def write(self, text: str) -> int:
        if self.written is not None:
            self.written.set()
        return super().write(text)


def test_a_line_made_without_a_record_is_the_line_the_record_would_make() -> None:
    """Access lines skip the LogRecord: each formatter's `line` must match its `format`."""
    record = logging.LogRecord(
        "hiagent_host.access", logging.INFO, __file__, 1, "GET / 200", (), None
    )
    record.access = {"request_id": "r-9"}
    text = logs.RedactingFormatter(logs.TextFormatter(), logs.Redactor())
    as_json = logs.JSONFormatter(logs.Redactor())
    for formatter in (text, as_json):
        made = formatter.line(record.created, "INFO", record.name, "GET / 200", record.access)
        assert made == formatter.format(record)
