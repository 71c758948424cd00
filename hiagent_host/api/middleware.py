"""Everything around a request, in one pure ASGI middleware: one pass over the headers, one
wrapped `send`, one wrapped `receive`.

- **Request id and timing.** Every response carries `X-Request-ID` (the caller's, when it is a
  sane token, else a new one) and `X-Process-Time` (seconds to the response head).
- **API keys.** With keys configured, every path but the public ones (probes, the console's
  static files) needs `Authorization: Bearer <key>`; the key is compared in constant time with
  every configured key (no early exit), and neither the header nor a key is ever logged. A
  failure is a 401 `Unauthorized` envelope. With no keys, nothing is checked.
- **Keep-alive after an early answer.** HTTP/1.1 can carry the next request on a connection
  only once this one's body has been read; Hypercorn closes the connection otherwise. So when a
  response starts before the body was read (401, 404, 413, 422), the rest of the body, up to
  `DRAIN_MAX_BYTES`, is read and dropped first (waiting at most `DRAIN_WAIT_S`); a larger or
  slower body gets the answer with `Connection: close`.
- **The end of a graceful shutdown.** `serve` calls `Shutdown.begin(grace_s)` on SIGTERM or
  SIGINT. When `grace_s` ends, every request still running is cancelled (`Task.cancel`, which
  cancels its call in the plugin process) and answered here: a 503 `ShuttingDown` envelope, or,
  once a stream has begun, an SSE `error` event with the same object. Hypercorn is given
  `ANSWER_MARGIN_S` more than `grace_s`, so nobody gets its bare 500 instead.
- **Last resort.** An exception nobody anticipated is a 500 `InternalError` envelope, logged
  with its traceback.
- **Metrics and the access log.** Each request is counted by route template; one access-log
  line is written when the response is complete (handlers add fields with `annotate`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import re
import time
from collections.abc import Iterable
from typing import Any, Final

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hiagent_host import logs
from hiagent_host.api import responses
from hiagent_host.api.metrics import UNMATCHED, Metrics
from hiagent_host.api.sse import encode_error
from hiagent_host.errors import SHUTTING_DOWN, UNAUTHORIZED, HostError

log = logging.getLogger("hiagent_host.api")

REQUEST_ID_HEADER: Final = b"x-request-id"
PROCESS_TIME_HEADER: Final = b"x-process-time"
# Where handlers leave fields for the access log (package, plugin, tool of a tool call).
ACCESS_FIELDS: Final = "hiagent.access"
REQUEST_ID: Final = "hiagent.request_id"
# The status logged for a request whose client left before it was answered (nginx's choice).
CLIENT_GONE: Final = 499
# A caller's request id is echoed only if it is a plain token of reasonable length.
_SANE_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")
_BEARER: Final = b"bearer "
# A body still to come of at most this many bytes is read and dropped before an early answer
# (many clients send their whole body before they read: closing on them loses the answer).
DRAIN_MAX_BYTES: Final = 64 * 1024 * 1024
# How long an early answer waits for such a body in all; a client that has not sent it by
# then (or never will) gets the answer with `Connection: close`.
DRAIN_WAIT_S: Final = 2.0
CLOSE: Final = (b"connection", b"close")
# Hypercorn waits this much longer than server.graceful_shutdown_s: the time to answer the
# requests cut at the end of the grace period.
ANSWER_MARGIN_S: Final = 1.0
EVENT_STREAM: Final = b"text/event-stream"


def annotate(request: Request, **fields: str) -> None:
    """Add fields (e.g. pkg, plugin, tool) to this request's access-log line."""
    request.scope.setdefault(ACCESS_FIELDS, {}).update(fields)


def shutting_down() -> HostError:
    return HostError(
        "the server is shutting down: the call did not finish within server.graceful_shutdown_s",
        code=SHUTTING_DOWN,
        http_status=503,
    )


class Shutdown:
    """The requests in flight (their tasks), and the moment they must be cut."""

    def __init__(self) -> None:
        self.running: set[asyncio.Task[Any]] = set()
        self.cut_tasks: set[asyncio.Task[Any]] = set()
        self.cut = False

    def begin(self, grace_s: float) -> None:
        """Shutdown has started: cut what is still running when `grace_s` ends."""
        asyncio.get_running_loop().call_later(grace_s, self.cut_all)  # called on the loop

    def cut_all(self) -> None:
        self.cut = True
        if self.running:
            log.warning("answering %d request(s) still running: ShuttingDown", len(self.running))
        for task in self.running:
            self.cut_tasks.add(task)
            task.cancel()


class RequestMiddleware:
    """The request's context, its keys, keep-alive, shutdown, last resort, metrics and log."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        shutdown: Shutdown,
        access_log_enabled: bool = True,
        keys: Iterable[str] = (),
        public: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.shutdown = shutdown
        self.access_log_enabled = access_log_enabled
        self._keys = tuple(k.encode() for k in keys)
        self._public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(scope, receive, send)
        task = asyncio.current_task()
        assert task is not None
        shutdown = self.shutdown
        shutdown.running.add(task)
        try:
            problem = self._unauthorized(exchange) if self._keys else None
            if shutdown.cut:
                await exchange.answer(shutting_down())
            elif problem is not None:
                await exchange.answer(HostError(problem, code=UNAUTHORIZED, http_status=401))
            else:
                await self.app(scope, exchange.receive, exchange.send)
        except asyncio.CancelledError:
            if task not in shutdown.cut_tasks:
                raise
            task.uncancel()  # cut at the end of the grace period: answer it
            await exchange.cut()
        except ClientDisconnect:
            exchange.status = exchange.status or CLIENT_GONE
        except Exception:
            log.exception(
                "unhandled error in %s %s (request id %s)",
                scope["method"],
                scope["path"],
                exchange.request_id,
            )
            if exchange.status == 0:
                await exchange.answer(responses.internal_error(exchange.request_id))
        finally:
            shutdown.running.discard(task)
            shutdown.cut_tasks.discard(task)
            elapsed = time.perf_counter() - exchange.start
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            status = exchange.status or CLIENT_GONE
            self.metrics.observe_request(template, scope["method"], status, elapsed)
            if self.access_log_enabled:
                logs.access(
                    scope["method"],
                    scope["path"],
                    status,
                    elapsed,
                    exchange.request_id,
                    scope.get("client"),
                    scope.get(ACCESS_FIELDS),
                )

    def _unauthorized(self, exchange: _Exchange) -> str | None:
        """Why the request may not pass (None: it may)."""
        if exchange.scope["path"] in self._public:
            return None
        presented = exchange.authorization
        if presented is None:
            return "missing Authorization header; send 'Authorization: Bearer <api key>'"
        if presented[: len(_BEARER)].lower() != _BEARER:
            return "the Authorization header must use the Bearer scheme"
        token = presented[len(_BEARER) :].strip()
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(token, key)
        return None if matched else "invalid API key"


class _Exchange:
    """One request and its response as the middleware sees them."""

    __slots__ = (
        "_chunked",
        "_declared",
        "_finished",
        "_read",
        "_receive",
        "_send",
        "authorization",
        "body_done",
        "request_id",
        "scope",
        "start",
        "started",
        "status",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.start = time.perf_counter()
        self.scope = scope
        self._receive = receive
        self._send = send
        self.status = 0
        self.started: Message | None = None  # the response head, once sent
        self._finished = False
        self.authorization: bytes | None = None
        incoming: bytes | None = None
        length = b"0"
        chunked = False
        for name, value in scope["headers"]:  # one pass for every header this needs
            if name == b"content-length":
                length = value
            elif name == b"x-request-id":
                incoming = value
            elif name == b"authorization":
                self.authorization = value
            elif name == b"transfer-encoding":
                chunked = True
        if incoming is not None and _SANE_ID.fullmatch(incoming):
            self.request_id = incoming.decode("ascii")
        else:
            self.request_id = os.urandom(16).hex()
        scope[REQUEST_ID] = self.request_id
        self._chunked = chunked
        self._declared = int(length) if length.isdigit() else None
        self._read = 0
        self.body_done = not chunked and self._declared == 0

    async def receive(self) -> Message:
        message = await self._receive()
        kind = message["type"]
        if kind == "http.request":
            self._read += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.body_done = True
        elif kind == "http.disconnect":
            self.body_done = True  # nothing more will come: nothing to drain
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.started = message
            self.status = message["status"]
            elapsed = time.perf_counter() - self.start
            headers = list(message.get("headers", ()))
            headers.append((REQUEST_ID_HEADER, self.request_id.encode()))
            headers.append((PROCESS_TIME_HEADER, f"{elapsed:.6f}".encode()))
            if not self.body_done:
                with anyio.move_on_after(DRAIN_WAIT_S):
                    await self._drain()
                if not self.body_done:
                    headers.append(CLOSE)
            message = {**message, "headers": headers}
        elif kind == "http.response.body" and not message.get("more_body"):
            self._finished = True
        await self._send(message)

    async def _drain(self) -> None:
        """Read and drop the rest of the body while it stays within `DRAIN_MAX_BYTES`."""
        if not self._chunked and (self._declared is None or self._declared > DRAIN_MAX_BYTES):
            return  # too large to read for nothing (or unframed: h11 refuses those anyway)
        while not self.body_done and self._read <= DRAIN_MAX_BYTES:
            await self.receive()

    async def answer(self, exc: HostError) -> None:
        """Answer with `exc`'s envelope (through `send`: headers, keep-alive)."""
        await responses.error(exc)(self.scope, self.receive, self.send)

    async def cut(self) -> None:
        """The grace period ended with this request running: answer ShuttingDown."""
        if self._finished:
            return
        error = shutting_down()
        if self.started is None:
            await self.answer(error)
            return
        headers = dict(self.started.get("headers", []))
        if headers.get(b"content-type", b"").startswith(EVENT_STREAM):
            await self._send({"type": "http.response.body", "body": encode_error(error)})
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})
