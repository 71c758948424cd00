"""The /v1 envelope as Starlette responses: `{"data", "error"}`, encoded once with msgspec."""

from __future__ import annotations

from typing import Any, Final

import msgspec
from starlette.responses import Response

from hiagent_host.errors import INTERNAL_ERROR, HostError

JSON: Final = "application/json"
_encoder = msgspec.json.Encoder()

# A plugin may report any http_code; one that is not an HTTP status is sent as 500 (the body
# keeps what the plugin said).
_MIN_STATUS: Final = 100
_MAX_STATUS: Final = 599


def encode(value: Any) -> bytes:
    """JSON bytes of any wire value (Structs, plain JSON values)."""
    return _encoder.encode(value)


class JSONBody(Response):
    """A JSON response whose body is already encoded (no second serialisation pass)."""

    media_type = JSON

    def __init__(
        self, body: bytes, status_code: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(body, status_code=status_code, headers=headers)


def ok(data: Any = None) -> JSONBody:
    """HTTP 200 `{"data": data, "error": null}`."""
    return JSONBody(b'{"data":' + _encoder.encode(data) + b',"error":null}')


def error_status(exc: HostError) -> int:
    status = exc.http_status
    return status if isinstance(status, int) and _MIN_STATUS <= status <= _MAX_STATUS else 500


def error_body(exc: HostError) -> bytes:
    return b'{"data":null,"error":' + encode_error(exc) + b"}"


def encode_error(exc: HostError) -> bytes:
    """The error object; data that is not JSON-able is replaced by its repr, never a 500."""
    try:
        return _encoder.encode(exc.to_dict())
    except (TypeError, ValueError, OverflowError):
        fallback = exc.to_dict() | {"data": repr(exc.data)}
        return _encoder.encode(fallback)


def error(exc: HostError) -> JSONBody:
    """HTTP `error.http_code` with the error envelope; PoolExhausted adds `Retry-After`."""
    headers = {}
    retry_after = retry_after_s(exc)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if exc.http_status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONBody(error_body(exc), status_code=error_status(exc), headers=headers or None)


def retry_after_s(exc: HostError) -> int | None:
    """Whole seconds for `Retry-After` when the error carries `data.retry_after_s`."""
    data = exc.data
    if isinstance(data, dict):
        value = data.get("retry_after_s")
        if isinstance(value, int | float) and value >= 0:
            return max(1, int(value + 0.999))
    return None


def internal_error(request_id: str | None = None) -> HostError:
    """What a caller sees for a failure the host did not anticipate (details go to the log)."""
    suffix = f" (request id {request_id})" if request_id else ""
    return HostError(
        f"internal error{suffix}; the server log has the details",
        code=INTERNAL_ERROR,
        http_status=500,
    )
