"""The frames the shim writes (in-process): size limits, unserialisable results, id prefixes."""

from __future__ import annotations

import json

from hiagent_host.rpc.framing import sniff_call_id
from hiagent_shim import protocol
from hiagent_shim.plugins import ShimError, to_shim_error

LIMIT = 1024


def test_a_result_frame_names_its_call_first() -> None:
    frame = protocol.result_frame(7, {"a": "汉"}, LIMIT)
    assert frame == '{"jsonrpc":"2.0","id":7,"result":{"a":"汉"}}'.encode()
    assert sniff_call_id(frame) == (7, False)


def test_an_oversize_result_becomes_result_too_large_for_the_same_call() -> None:
    frame = protocol.result_frame(7, "x" * 2000, LIMIT)
    answer = json.loads(frame)
    assert answer["id"] == 7
    assert answer["error"]["code"] == protocol.APPLICATION_ERROR
    assert answer["error"]["data"]["code"] == "ResultTooLarge"
    assert answer["error"]["data"]["http_code"] == 502
    size = len(b'{"jsonrpc":"2.0","id":7,"result":""}') + 2000
    assert answer["error"]["data"]["data"] == {"size": size, "limit": LIMIT}


def test_a_result_json_cannot_carry_becomes_result_not_serializable() -> None:
    answer = json.loads(protocol.result_frame(3, {"x": float("nan")}, LIMIT))
    assert answer["error"]["data"]["code"] == "ResultNotSerializable"
    assert answer["error"]["data"]["http_code"] == 500


def test_an_error_too_large_to_send_loses_its_details_not_its_code() -> None:
    error = ShimError("Boom", "m" * 5000, http_code=418, data={"blob": "b" * 5000})
    frame = protocol.error_frame(4, protocol.application_error(error), LIMIT)
    answer = json.loads(frame)
    assert len(frame) <= LIMIT
    assert answer["error"]["data"] == {"code": "Boom", "http_code": 418, "data": None}
    assert answer["error"]["message"].startswith("mmm")


def test_details_json_cannot_carry_are_dropped_from_an_error() -> None:
    error = ShimError("Boom", "bad", http_code=500, data={"x": float("nan")})
    answer = json.loads(protocol.error_frame(4, protocol.application_error(error), LIMIT))
    assert answer["error"]["data"] == {"code": "Boom", "http_code": 500, "data": None}


def test_stream_items_name_their_call_first() -> None:
    frame = protocol.stream_item_frame(9, 0, "item", LIMIT)
    assert json.loads(frame) == {
        "jsonrpc": "2.0",
        "method": "$/stream",
        "params": {"id": 9, "seq": 0, "item": "item"},
    }
    assert sniff_call_id(frame) == (9, True)


def test_cancellation_has_its_own_code_and_status_499() -> None:
    error = protocol.application_error(protocol.cancelled())
    assert error["code"] == protocol.REQUEST_CANCELLED
    assert error["data"] == {"code": "Cancelled", "http_code": 499, "data": None}


def test_exceptions_with_code_message_and_http_code_are_forwarded_verbatim() -> None:
    class PluginError(Exception):
        def __init__(self) -> None:
            self.code = "QuotaExceeded"
            self.message = "no quota left"
            self.http_code = 429
            self.data = {"left": 0}

    forwarded = to_shim_error(PluginError())
    assert (forwarded.code, forwarded.message, forwarded.http_code) == (
        "QuotaExceeded",
        "no quota left",
        429,
    )
    assert forwarded.data == {"left": 0}
    other = to_shim_error(KeyError("k"))
    assert (other.code, other.http_code, other.data) == ("KeyError", 500, None)
