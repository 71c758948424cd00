"""The wire's messages as msgspec Structs, and child errors as HostErrors (constants: the shim's).

Field order is wire order: the host writes `{"jsonrpc":"2.0","id":N,"method":...}`, so the
child can read the id of a request it must discard from the frame's first bytes.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

import hiagent_shim
from hiagent_host.errors import CANCELLED, PROTOCOL_ERROR, HostError
from hiagent_shim.protocol import (
    ABANDONED_THREAD,
    APPLICATION_ERROR,
    CANCEL_REQUEST,
    CANCELLED_HTTP,
    INITIALIZE,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    JSONRPC,
    METADATA,
    METHOD_NOT_FOUND,
    NOT_INITIALIZED,
    PARSE_ERROR,
    PING,
    REQUEST_CANCELLED,
    RUN_TOOL,
    SHUTDOWN,
    STREAM_ACK,
    STREAM_ITEM,
    VALIDATE,
)

# The wire's constants are the shim's own (one source; the shim is stdlib-only and importable).
PROTOCOL_VERSION: Final = hiagent_shim.PROTOCOL_VERSION
CANCELLED_HTTP_STATUS: Final = CANCELLED_HTTP


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """host → child: a call that gets exactly one response."""

    jsonrpc: str = JSONRPC
    id: int
    method: str
    params: Any = msgspec.field(default_factory=dict)


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """Either direction: a message that gets no response."""

    jsonrpc: str = JSONRPC
    method: str
    params: Any = msgspec.field(default_factory=dict)


class ErrorObject(msgspec.Struct, frozen=True):
    """The `error` member of an error response."""

    code: int
    message: str
    data: Any = None


class Response(msgspec.Struct, frozen=True, kw_only=True):
    """child → host: the successful end of a call."""

    jsonrpc: str = JSONRPC
    id: int
    result: Any


class Incoming(msgspec.Struct, frozen=True):
    """Any message from the child, before it is told apart by its members."""

    jsonrpc: str
    id: int | None = None
    method: str | None = None
    params: Any = None
    result: Any = msgspec.UNSET
    error: ErrorObject | None = None


class CallRef(msgspec.Struct, frozen=True):
    """The params of `$/cancelRequest`."""

    id: int


class StreamItem(msgspec.Struct, frozen=True):
    """The params of `$/stream`: item number `seq` (from 0) of call `id`."""

    id: int
    seq: int
    item: Any = None


class StreamAck(msgspec.Struct, frozen=True):
    """The params of `$/streamAck`: the host has consumed items up to and including `seq`."""

    id: int
    seq: int


class AppErrorData(msgspec.Struct, frozen=True):
    """The `data` of every error the shim sends: the HTTP-facing code, status and details."""

    code: str
    http_code: int
    data: Any = None


def abandoned_thread(error: ErrorObject) -> bool:
    """Whether a `Cancelled` answer says the call's tool thread runs on, abandoned."""
    if error.code != REQUEST_CANCELLED or not isinstance(error.data, dict):
        return False
    details = error.data.get("data")
    return isinstance(details, dict) and details.get(ABANDONED_THREAD) is True


def error_to_host(error: ErrorObject) -> HostError:
    """A child's error as a HostError: application errors keep their code, status and data."""
    try:
        app = msgspec.convert(error.data, AppErrorData)
    except msgspec.ValidationError:
        app = None
    if error.code == REQUEST_CANCELLED:
        data = app.data if app is not None else None
        return HostError(
            error.message, code=CANCELLED, http_status=CANCELLED_HTTP_STATUS, data=data
        )
    if error.code == APPLICATION_ERROR and app is not None:
        return HostError(error.message, code=app.code, http_status=app.http_code, data=app.data)
    detail = app.data if app is not None else error.data
    return HostError(
        f"the plugin process reported a protocol error {error.code}: {error.message}",
        code=PROTOCOL_ERROR,
        http_status=502,
        data={"rpc_code": error.code, "detail": detail},
    )


__all__ = [
    "ABANDONED_THREAD",
    "APPLICATION_ERROR",
    "CANCELLED_HTTP_STATUS",
    "CANCEL_REQUEST",
    "INITIALIZE",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "JSONRPC",
    "METADATA",
    "METHOD_NOT_FOUND",
    "NOT_INITIALIZED",
    "PARSE_ERROR",
    "PING",
    "PROTOCOL_VERSION",
    "REQUEST_CANCELLED",
    "RUN_TOOL",
    "SHUTDOWN",
    "STREAM_ACK",
    "STREAM_ITEM",
    "VALIDATE",
]
