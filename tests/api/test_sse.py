"""Server-sent events: the encoding of each kind of item, and streams from the real server."""

from __future__ import annotations

import json
import re
import time
from typing import Any, Final

import httpx
import pytest

from hiagent_host.api.sse import encode_item
from tests.api.conftest import Installed
from tests.api.support import LiveServer, envelope_error, parse_sse

STREAM: Final = {"pkg": "hiagent-plugin-stream", "version": "0.1.0", "plugin": "stream"}
# Waiting for the plugin process to notice a cancelled stream is bounded by this.
CANCEL_WAIT_S: Final = 30.0


@pytest.mark.parametrize(
    ("item", "wire"),
    [
        ({"event": "message", "data": "hi", "id": "1", "retry": 50},
         b"event: message\nid: 1\nretry: 50\ndata: hi\n\n"),
        ({"event": "ping", "data": None, "id": None, "retry": None}, b"event: ping\n\n"),
        ({"data": "line one\nline two"}, b"data: line one\ndata: line two\n\n"),
        ({"data": {"k": [1, 2]}}, b'data: {"k":[1,2]}\n\n'),
        ({"event": "a\nb", "data": "x"}, b"event: a b\ndata: x\n\n"),
        ("plain text", b"data: plain text\n\n"),
        ("two\nlines", b"data: two\ndata: lines\n\n"),
        ("", b"data: \n\n"),
        (42, b"data: 42\n\n"),
        ({"event": "x", "other": 1}, b'data: {"event":"x","other":1}\n\n'),
        ({}, b"data: {}\n\n"),
        ([1, "二"], 'data: [1,"二"]\n\n'.encode()),
        (None, b"data: null\n\n"),
    ],
)  # fmt: skip
def test_each_kind_of_item_becomes_one_event(item: Any, wire: bytes) -> None:
    assert encode_item(item) == wire


# Characters `str.splitlines` treats as line ends that the SSE grammar does not.
NOT_LINE_ENDS: Final = ["\u2028", "\u2029", "\x85", "\x0c", "\x0b", "\x1c", "\x1d", "\x1e"]


def _sse_data(wire: bytes) -> str:
    """The data of one event, read as the SSE grammar says: lines end at CRLF, CR or LF only."""
    lines = re.split(r"\r\n|\r|\n", wire.decode("utf-8"))
    return "\n".join(line.removeprefix("data: ") for line in lines if line.startswith("data: "))


@pytest.mark.parametrize("char", NOT_LINE_ENDS)
def test_json_items_with_unicode_line_separators_stay_valid_json(char: str) -> None:
    for item in ({"text": f"a{char}b"}, [f"x{char}"], {"data": {"k": f"{char}v{char}"}}):
        decoded = json.loads(_sse_data(encode_item(item)))
        assert decoded == (item["data"] if isinstance(item, dict) and "data" in item else item)


@pytest.mark.parametrize("char", NOT_LINE_ENDS)
def test_text_items_split_only_on_cr_lf_and_crlf(char: str) -> None:
    text = f"one{char}still one\r\ntwo\rthree\nfour"
    assert _sse_data(encode_item(text)) == f"one{char}still one\ntwo\nthree\nfour"
    assert encode_item(text).count(b"data: ") == 4


def stream(client: httpx.Client, tool: str, **tool_input: Any) -> httpx.Response:
    call = STREAM | {"tool": tool, "input": tool_input, "stream": True}
    return client.post("/v1/RunPluginTool", json=call)


def test_numbers_from_an_async_and_a_sync_generator_arrive_in_order(
    client: httpx.Client, installed: Installed
) -> None:
    for tool in ("numbers", "sync_numbers"):
        events = parse_sse(stream(client, tool, n=3).text)
        assert events == [
            {"data": "0"},
            {"data": "1"},
            {"data": "2"},
            {"event": "done", "data": "{}"},
        ]


def test_a_failure_after_the_first_item_ends_the_stream_with_an_error_event(
    client: httpx.Client, installed: Installed
) -> None:
    response = stream(client, "fail_midway", n=2)
    assert response.status_code == 200
    *items, last = parse_sse(response.text)
    assert items == [{"data": "0"}, {"data": "1"}]
    assert last["event"] == "error"
    assert httpx.Response(200, content=last["data"]).json() == {
        "code": "StreamBroke", "message": "broke after 2 items", "data": {"sent": 2},
        "http_code": 502,
    }  # fmt: skip


def test_a_failure_before_the_stream_opens_is_a_json_error_not_a_200(
    client: httpx.Client, installed: Installed
) -> None:
    response = stream(client, "no_such_tool")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert envelope_error(response)["code"] == "ToolNotFound"


def test_an_idle_stream_gets_keep_alive_comments(
    client: httpx.Client, installed: Installed
) -> None:
    # the test server sends a keep-alive after 0.3 s of silence
    response = stream(client, "slow", n=2, interval_s=1.0)
    assert response.text.count(": keep-alive\n\n") >= 2
    assert parse_sse(response.text) == [
        {"data": "0"}, {"data": "1"}, {"event": "done", "data": "{}"},
    ]  # fmt: skip


def test_a_stream_past_its_timeout_ends_with_a_tool_timeout_event(
    client: httpx.Client, installed: Installed
) -> None:
    call = STREAM | {"tool": "slow", "input": {"n": 100, "interval_s": 0.2}, "stream": True,
                     "timeout_s": 0.5}  # fmt: skip
    response = client.post("/v1/RunPluginTool", json=call)
    last = parse_sse(response.text)[-1]
    assert last["event"] == "error"
    assert '"code":"ToolTimeout"' in last["data"]


def test_a_client_that_disconnects_cancels_the_call_in_the_plugin_process(
    client: httpx.Client, server: LiveServer, installed: Installed
) -> None:
    call = STREAM | {"tool": "slow", "input": {"n": 10000, "interval_s": 0.01}, "stream": True}
    closed_before = _stream_plugin_log(server).count("slow stream closed after")
    with httpx.stream("POST", f"{server.url}/v1/RunPluginTool", json=call, timeout=30) as response:
        lines = response.iter_lines()
        assert next(lines) == "data: 0"
    # the plugin prints "slow stream closed after N items" to its log when its generator closes
    deadline = time.monotonic() + CANCEL_WAIT_S
    while _stream_plugin_log(server).count("slow stream closed after") == closed_before:
        assert time.monotonic() < deadline, "the stream was not cancelled in the plugin"
        time.sleep(0.05)  # polling the plugin's log, bounded by CANCEL_WAIT_S
    processes = client.post("/v1/ListProcesses", json={}).json()["data"]
    stream_proc = next(p for p in processes if p["pkg"] == "hiagent-plugin-stream")
    assert stream_proc["calls_in_flight"] == 0


def _stream_plugin_log(server: LiveServer) -> str:
    logs = sorted((server.config.parent / "data" / "state").rglob("*stream*/*.log"))
    return "".join(p.read_text(errors="replace") for p in logs)
