"""The per-request context: request id, timing headers, metrics, access log, last-resort 500.

A pure ASGI middleware (no BaseHTTPMiddleware), so streamed responses pass through unbuffered.
It adds `X-Request-ID` (the caller's, when it is a sane token, else a new one) and
`X-Process-Time` (seconds to the response head) to every response; turns an exception nobody
anticipated into a 500 `InternalError` envelope logged with its traceback; counts the request
by route template; and writes one access-log line when the response is complete.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any, Final

from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hiagent_host.api import responses
from hiagent_host.api.metrics import UNMATCHED, Metrics

access_log = logging.getLogger("hiagent_host.access")
log = logging.getLogger("hiagent_host.api")

REQUEST_ID_HEADER: Final = b"x-request-id"
PROCESS_TIME_HEADER: Final = b"x-process-time"
# Where handlers leave fields for the access log (package, plugin, tool of a tool call).
ACCESS_FIELDS: Final = "hiagent.access"
REQUEST_ID: Final = "hiagent.request_id"
# Fields that lead the text access-log line; the rest follow as key=value.
_HEAD: Final = frozenset({"method", "path", "status", "duration_s"})
# Control characters in caller-supplied text become "?" in the text access log.
_CONTROL: Final = dict.fromkeys([*range(32), 127], "?")
# The status logged for a request whose client left before it was answered (nginx's choice).
CLIENT_GONE: Final = 499
# A caller's request id is echoed only if it is a plain token of reasonable length.
_SANE_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")


def annotate(request: Request, **fields: str) -> None:
    """Add fields (e.g. pkg, plugin, tool) to this request's access-log line."""
    request.scope.setdefault(ACCESS_FIELDS, {}).update(fields)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, access_log_enabled: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log_enabled = access_log_enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = _incoming_id(scope) or uuid.uuid4().hex
        scope[REQUEST_ID] = rid
        rid_bytes = rid.encode()
        status = 0

        async def send_with_context(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                elapsed = time.perf_counter() - start
                headers = list(message.get("headers", ()))
                headers.append((REQUEST_ID_HEADER, rid_bytes))
                headers.append((PROCESS_TIME_HEADER, f"{elapsed:.6f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_context)
        except ClientDisconnect:
            status = status or CLIENT_GONE
        except Exception:
            log.exception(
                "unhandled error in %s %s (request id %s)", scope["method"], scope["path"], rid
            )
            if status == 0:
                await responses.error(responses.internal_error(rid))(
                    scope, receive, send_with_context
                )
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            self.metrics.observe_request(template, scope["method"], status or CLIENT_GONE, elapsed)
            if self.access_log_enabled:
                _log_access(scope, status, elapsed, rid)


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            return value.decode("ascii") if _SANE_ID.fullmatch(value) else None
    return None


def _log_access(scope: Scope, status: int, elapsed: float, rid: str) -> None:
    """One access-log record, handed to the handlers directly (`makeRecord` and `handle`, the
    documented way to log a record made by hand): no caller lookup, and its text is built only
    if a formatter asks for it."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    fields: dict[str, Any] = {
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "duration_s": round(elapsed, 6),
        "request_id": rid,
    }
    client = scope.get("client")
    if client:
        fields["client"] = f"{client[0]}:{client[1]}"
    annotated = scope.get(ACCESS_FIELDS)
    if annotated:
        fields.update(annotated)
    record = access_log.makeRecord(
        access_log.name, logging.INFO, __file__, 0, _AccessLine(fields), (), None,
        extra={"access": fields},
    )  # fmt: skip
    access_log.handle(record)


class _AccessLine:
    """The text of an access-log line (`POST /v1/X 200 0.0012s key=value …`), made on demand."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        f = self.fields
        extra = " ".join([f"{k}={_printable(v)}" for k, v in f.items() if k not in _HEAD])
        return f"{f['method']} {_printable(f['path'])} {f['status']} {f['duration_s']:.4f}s {extra}"


def _printable(value: object) -> str:
    """Caller-supplied text on one line: control characters cannot forge log lines."""
    return value.translate(_CONTROL) if isinstance(value, str) else str(value)
