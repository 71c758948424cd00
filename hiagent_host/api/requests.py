"""Request bodies: read under the size cap, decode against the route's Struct, name bad fields.

The cap is enforced while the body streams in, whatever Content-Length says (or if it is
missing); a body over the cap is drained (up to a bound) and discarded so the caller can read
the 413. Malformed JSON is a 400 `BadRequest`; a non-object, a missing key or a wrong type is a
422 `InvalidRequest` whose `data.field` names the offending key.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import msgspec
from starlette.requests import ClientDisconnect, Request

from hiagent_host.errors import BAD_REQUEST, PAYLOAD_TOO_LARGE, HostError, InvalidInput

T = TypeVar("T")

# A request body (and the `cfg` header) may nest objects and arrays this deep, no deeper:
# plugins and the wire stay far from any recursion limit (docs/http-api.md).
MAX_JSON_DEPTH: Final = 64


def payload_too_large(limit: int) -> HostError:
    return HostError(
        f"request body exceeds the limit of {limit} bytes",
        code=PAYLOAD_TOO_LARGE,
        http_status=413,
        data={"max_body_bytes": limit},
    )


def bad_request(message: str, **data: Any) -> HostError:
    return HostError(message, code=BAD_REQUEST, http_status=400, data=data or None)


def invalid(message: str, field: str | None) -> InvalidInput:
    return InvalidInput(message, data={"field": field})


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or `PayloadTooLarge` as soon as it is known to be over `limit`."""
    declared = None
    for name, value in request.scope["headers"]:
        if name == b"content-length":
            declared = value
            break
    if declared is not None:
        try:
            declared_bytes = int(declared)
        except ValueError:
            raise bad_request("invalid Content-Length header") from None
        if declared_bytes > limit:  # the body is left unread: see api/middleware.py
            raise payload_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] != "http.request":  # http.disconnect: nobody is left to answer
            raise ClientDisconnect
        chunk: bytes = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise payload_too_large(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def decode(body: bytes, type_: type[T], *, where: str = "body") -> T:
    """`body` as `type_`; an empty body counts as `{}`."""
    if not body.strip():
        body = b"{}"
    try:
        value = msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise _refused(exc, body, type_, where) from None
    except msgspec.DecodeError as exc:
        raise bad_request(f"malformed JSON in the request {where}: {exc}") from None
    except RecursionError:  # msgspec gives up near the interpreter's recursion limit
        raise too_deep(where, None) from None
    if len(body) > 2 * MAX_JSON_DEPTH:  # anything shorter cannot nest that deep
        check_depth(value, where)
    return value


def _refused(exc: msgspec.ValidationError, body: bytes, type_: Any, where: str) -> HostError:
    """The error for a body `type_` refused: the field to blame is found on the body decoded
    as plain JSON (which may turn out malformed further on, or too deep)."""
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError as malformed:
        return bad_request(f"malformed JSON in the request {where}: {malformed}")
    except RecursionError:
        return too_deep(where, None)
    return _invalid(exc, value, type_, where, strict=True)


def too_deep(where: str, field: str | None) -> InvalidInput:
    message = f"the request {where} nests JSON deeper than {MAX_JSON_DEPTH} levels"
    return invalid(message, field)


def check_depth(value: Any, where: str, field: str | None = None) -> None:
    """InvalidRequest (naming `field`, else the top-level key) if `value` nests too deep."""
    pending: list[tuple[Any, int, str | None]]
    roots = value.__struct_fields__ if isinstance(value, msgspec.Struct) else None
    if field is not None:
        pending = [(value, 1, field)]
    elif roots is not None:
        pending = [(getattr(value, name), 2, name) for name in roots]
    elif isinstance(value, dict):
        pending = [(item, 2, str(key)) for key, item in value.items()]
    else:
        pending = [(value, 1, None)]
    while pending:
        item, depth, field = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise too_deep(where, field)
            children = item.values() if isinstance(item, dict) else item
            pending += [(child, depth + 1, field) for child in children]


def convert(value: Any, type_: type[T], *, where: str) -> T:
    """An already-parsed value (query string, header) as `type_`."""
    try:
        return msgspec.convert(value, type_, strict=False)
    except msgspec.ValidationError as exc:
        raise _invalid(exc, value, type_, where, strict=False) from None


def _invalid(
    exc: msgspec.ValidationError, value: Any, type_: Any, where: str, *, strict: bool
) -> InvalidInput:
    if _is_struct(type_) and not isinstance(value, dict):
        return invalid(f"the request {where} must be a JSON object", None)
    return invalid(f"invalid request {where}: {exc}", _bad_field(value, type_, strict=strict))


def _bad_field(value: Any, type_: Any, *, strict: bool, path: str = "") -> str | None:
    """The dotted name of the first field of `value` (a decoded JSON object) that the Struct
    `type_` refuses, found by converting field by field; None if no single field is to blame."""
    if not _is_struct(type_) or not isinstance(value, dict):
        return None
    for field in msgspec.structs.fields(type_):
        name = f"{path}.{field.encode_name}" if path else field.encode_name
        if field.encode_name not in value:
            if field.required:
                return name
            continue
        item = value[field.encode_name]
        try:
            msgspec.convert(item, field.type, strict=strict)
        except msgspec.ValidationError:
            return _bad_field(item, field.type, strict=strict, path=name) or name
    return None


def _is_struct(type_: Any) -> bool:
    return isinstance(type_, type) and issubclass(type_, msgspec.Struct)
