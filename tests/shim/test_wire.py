"""The wire holds: stray prints, malformed lines and over-size frames never break a frame."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hiagent_host.errors import RESULT_TOO_LARGE, HostError
from tests.shim.support import STEP_S, raw_shim, running_shim

PONG = {"jsonrpc": "2.0", "id": 99, "result": "pong"}


@pytest.mark.anyio
async def test_plugin_prints_go_to_stderr_and_never_corrupt_a_frame(
    shim_python: Path, data_dir: Path
) -> None:
    async with raw_shim(shim_python, "hiagent-plugin-noisy", data_dir) as shim:
        await shim.initialize()
        for call_id, tool in ((1, "chatter"), (2, "achatter")):
            params = {"plugin": "noisy", "tool": tool, "input": {"text": f"m{call_id}"}}
            await shim.request(call_id, "run_tool", params)
            assert await shim.receive() == {
                "jsonrpc": "2.0",
                "id": call_id,
                "result": {"text": f"m{call_id}"},
            }
        await shim.request(99, "ping")
        assert await shim.receive() == PONG
        await shim.stderr.wait_for("noisy subprocess: m1")
        await shim.stderr.wait_for("noisy async print: m2")
    for marker in (
        "noisy: import-time chatter on stdout",
        "noisy print: m1",
        "noisy write: m1",
        "noisy __stdout__: m1",
        "noisy fd1: m1",
    ):
        assert marker in shim.stderr.text


@pytest.mark.anyio
@pytest.mark.parametrize(
    "line",
    [b"this is not json", b"\xff\xfe\x00", b"", b'{"jsonrpc":"2.0","id":1,"method":'],
    ids=["text", "not-utf8", "blank", "cut"],
)
async def test_a_malformed_line_is_answered_parse_error_and_the_shim_carries_on(
    shim_python: Path, data_dir: Path, line: bytes
) -> None:
    async with raw_shim(shim_python, "hiagent-plugin-calc", data_dir) as shim:
        await shim.initialize()
        await shim.send_line(line)
        answer = await shim.receive()
        await shim.request(99, "ping")
        assert await shim.receive() == PONG
    assert answer["id"] is None
    assert answer["error"]["code"] == -32700
    assert answer["error"]["data"]["code"] == "ProtocolError"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("message", "answer_id"),
    [
        ([1, 2, 3], None),
        ({"jsonrpc": "1.0", "id": 5, "method": "ping"}, 5),
        ({"jsonrpc": "2.0", "id": "five", "method": "ping"}, None),
        ({"jsonrpc": "2.0", "id": 5}, 5),
    ],
    ids=["array", "old-version", "string-id", "no-method"],
)
async def test_an_invalid_request_is_answered_with_its_id_when_it_has_one(
    shim_python: Path, data_dir: Path, message: object, answer_id: int | None
) -> None:
    async with raw_shim(shim_python, "hiagent-plugin-calc", data_dir) as shim:
        await shim.initialize()
        await shim.send_line(json.dumps(message).encode())
        answer = await shim.receive()
        await shim.request(99, "ping")
        assert await shim.receive() == PONG
    assert (answer["id"], answer["error"]["code"]) == (answer_id, -32600)


@pytest.mark.anyio
async def test_a_duplicate_id_in_flight_is_refused_and_unknown_notifications_ignored(
    shim_python: Path, data_dir: Path
) -> None:
    async with raw_shim(shim_python, "hiagent-plugin-hang", data_dir) as shim:
        await shim.initialize()
        hang = {"plugin": "hang", "tool": "sleep_async", "input": {"seconds": 3600}}
        await shim.request(1, "run_tool", hang)
        await shim.request(1, "run_tool", hang)
        await shim.send({"method": "$/somethingNew", "params": {"id": 1}})
        duplicate = await shim.receive()
        await shim.request(99, "ping")
        assert await shim.receive() == PONG
    assert (duplicate["id"], duplicate["error"]["code"]) == (1, -32600)


@pytest.mark.anyio
async def test_an_oversize_request_is_discarded_and_answered_with_its_id(
    shim_python: Path, data_dir: Path
) -> None:
    async with raw_shim(shim_python, "hiagent-plugin-calc", data_dir) as shim:
        await shim.initialize(max_frame_bytes=4096)
        params = {"plugin": "calc", "tool": "evaluate", "input": {"expression": "1" * 100_000}}
        await shim.request(7, "run_tool", params)
        answer = await shim.receive()
        await shim.request(99, "ping")
        assert await shim.receive() == PONG
    assert (answer["id"], answer["error"]["code"]) == (7, -32600)
    assert answer["error"]["data"]["data"]["limit"] == 4096
    assert answer["error"]["data"]["data"]["size"] > 100_000


@pytest.mark.anyio
async def test_an_oversize_result_is_replaced_by_result_too_large_and_the_shim_serves_on(
    shim_python: Path, data_dir: Path
) -> None:
    async with running_shim(
        shim_python, "hiagent-plugin-huge", data_dir, max_frame_bytes=4096
    ) as shim:
        assert len(await shim.run_tool("huge", "blob", {"size": 4000})) == 4000
        with pytest.raises(HostError) as caught:
            await shim.run_tool("huge", "blob", {"size": 5000})
        assert await shim.peer.call("ping", timeout_s=STEP_S) == "pong"
    assert (caught.value.code, caught.value.http_status) == (RESULT_TOO_LARGE, 502)
    assert caught.value.data["limit"] == 4096
    assert caught.value.data["size"] > 5000
