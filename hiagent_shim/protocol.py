"""The wire's vocabulary: JSON-RPC error codes, method names and the frames the shim writes.

Every frame that belongs to a call starts by naming it, so a reader that must discard an
over-size frame can still tell which call it was: responses start `{"jsonrpc":"2.0","id":N,`
and stream items `{"jsonrpc":"2.0","method":"$/stream","params":{"id":N,`.
"""

from __future__ import annotations

from typing import Any, Final

from hiagent_shim.encode import dumps
from hiagent_shim.plugins import ShimError

# JSON-RPC 2.0 codes for protocol faults.
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
NOT_INITIALIZED: Final = -32002
# Codes for the outcome of a call.
APPLICATION_ERROR: Final = -32000
REQUEST_CANCELLED: Final = -32800

# `data.code` strings the shim itself produces.
PROTOCOL_ERROR: Final = "ProtocolError"
CANCELLED: Final = "Cancelled"
RESULT_TOO_LARGE: Final = "ResultTooLarge"
RESULT_NOT_SERIALIZABLE: Final = "ResultNotSerializable"
PROTOCOL_ERROR_HTTP: Final = 502
CANCELLED_HTTP: Final = 499

STREAM_ITEM: Final = "$/stream"
STREAM_ACK: Final = "$/streamAck"
CANCEL_REQUEST: Final = "$/cancelRequest"

_HEAD: Final = b'{"jsonrpc":"2.0","id":'
# A character costs at most this many bytes in a JSON string (`\u001f`, escaped).
_MAX_JSON_BYTES_PER_CHAR: Final = 6


class ProtocolFault(Exception):
    """A request the shim cannot serve as asked: answered with a JSON-RPC code, not -32000."""

    def __init__(self, rpc_code: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.rpc_code = rpc_code
        self.message = message
        self.detail = detail


def fault_error(fault: ProtocolFault) -> dict[str, Any]:
    """The error object of a protocol fault (`data.code` is always `ProtocolError`)."""
    data = {"code": PROTOCOL_ERROR, "http_code": PROTOCOL_ERROR_HTTP, "data": fault.detail}
    return {"code": fault.rpc_code, "message": fault.message, "data": data}


def application_error(error: ShimError) -> dict[str, Any]:
    """The error object of a failed call; Cancelled gets its own JSON-RPC code."""
    rpc_code = REQUEST_CANCELLED if error.code == CANCELLED else APPLICATION_ERROR
    data = {"code": error.code, "http_code": error.http_code, "data": error.data}
    return {"code": rpc_code, "message": error.message, "data": data}


def cancelled(*, abandoned_thread: bool = False) -> ShimError:
    """`Cancelled`; `data` says when the call's thread runs on, abandoned (it cannot be stopped)."""
    data = {"abandoned_thread": True} if abandoned_thread else None
    return ShimError(CANCELLED, "the call was cancelled", http_code=CANCELLED_HTTP, data=data)


def too_large(size: int, limit: int, what: str = "result") -> ShimError:
    return ShimError(
        RESULT_TOO_LARGE,
        f"the {what} is {size} bytes as JSON, over max_frame_bytes ({limit})",
        http_code=502,
        data={"size": size, "limit": limit},
    )


def _id(call_id: int | None) -> bytes:
    return b"null" if call_id is None else str(call_id).encode()


def result_frame(call_id: int, result: Any, limit: int) -> bytes:
    """A response frame; ResultTooLarge / ResultNotSerializable when it cannot be sent."""
    try:
        body = dumps(result)
    except ValueError as exc:
        error = ShimError(RESULT_NOT_SERIALIZABLE, str(exc), http_code=500)  # dumps' own text
        return error_frame(call_id, application_error(error), limit)
    frame = b"".join((_HEAD, _id(call_id), b',"result":', body, b"}"))
    if len(frame) > limit:
        return error_frame(call_id, application_error(too_large(len(frame), limit)), limit)
    return frame


def error_frame(call_id: int | None, error: dict[str, Any], limit: int) -> bytes:
    """An error response within `limit`: details that do not fit are dropped, then the
    message is cut; only an error whose code alone is too long becomes ResultTooLarge."""
    frame = _error_bytes(call_id, error)
    if frame is not None and len(frame) <= limit:
        return frame
    data = error.get("data")
    slim = {**error, "data": {**data, "data": None} if isinstance(data, dict) else None}
    frame = _error_bytes(call_id, slim)
    if frame is not None and len(frame) <= limit:
        return frame
    empty = _error_bytes(call_id, {**slim, "message": ""})
    if empty is not None and len(empty) <= limit:
        budget = (limit - len(empty)) // _MAX_JSON_BYTES_PER_CHAR
        frame = _error_bytes(call_id, {**slim, "message": str(error["message"])[:budget]})
        if frame is not None:
            return frame
    fallback = too_large(len(frame or b""), limit, what="error")
    return b"".join((_HEAD, _id(call_id), b',"error":', dumps(application_error(fallback)), b"}"))


def _error_bytes(call_id: int | None, error: dict[str, Any]) -> bytes | None:
    try:
        return b"".join((_HEAD, _id(call_id), b',"error":', dumps(error), b"}"))
    except ValueError:
        return None


def stream_item_frame(call_id: int, seq: int, item: Any, limit: int) -> bytes:
    """A `$/stream` notification; raises ShimError when the item cannot be sent."""
    try:
        body = dumps(item)
    except ValueError as exc:
        raise ShimError(RESULT_NOT_SERIALIZABLE, str(exc), http_code=500) from exc
    head = b'{"jsonrpc":"2.0","method":"$/stream","params":{"id":%d,"seq":%d,"item":'
    frame = b"".join((head % (call_id, seq), body, b"}}"))
    if len(frame) > limit:
        raise too_large(len(frame), limit, what=f"stream item {seq}")
    return frame
