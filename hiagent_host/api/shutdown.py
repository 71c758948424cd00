"""The end of a graceful shutdown: requests still running are answered `ShuttingDown`.

`serve` calls `Shutdown.begin(grace_s)` when SIGTERM/SIGINT arrives. Hypercorn cancels what
is left when its own graceful timeout ends, which would reach the caller as a bare 500 with an
empty body (or a stream cut without a word); `serve` gives Hypercorn `grace_s +
ANSWER_MARGIN_S`, and when `grace_s` ends the middleware cancels every request still running
(which cancels its call in the plugin process) and answers it itself: a 503 `ShuttingDown`
envelope, or, once a stream has begun, an SSE `error` event with the same object.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hiagent_host.api import responses
from hiagent_host.api.sse import encode_error
from hiagent_host.errors import SHUTTING_DOWN, HostError

log = logging.getLogger("hiagent_host.api.shutdown")

# Hypercorn waits this much longer than server.graceful_shutdown_s: the time to answer the
# requests cut at the end of the grace period.
ANSWER_MARGIN_S: Final = 1.0
EVENT_STREAM: Final = b"text/event-stream"


def shutting_down() -> HostError:
    return HostError(
        "the server is shutting down: the call did not finish within server.graceful_shutdown_s",
        code=SHUTTING_DOWN,
        http_status=503,
    )


class Shutdown:
    """The requests in flight, and the moment they must be cut."""

    def __init__(self) -> None:
        self._scopes: set[anyio.CancelScope] = set()
        self._cut = False

    @property
    def cut(self) -> bool:
        return self._cut

    def begin(self, grace_s: float) -> None:
        """Shutdown has started: cut what is still running when `grace_s` ends."""
        asyncio.get_running_loop().call_later(grace_s, self.cut_all)  # called on the loop

    def cut_all(self) -> None:
        self._cut = True
        if self._scopes:
            log.warning("answering %d request(s) still running: ShuttingDown", len(self._scopes))
        for scope in list(self._scopes):
            scope.cancel()

    def track(self, scope: anyio.CancelScope) -> None:
        self._scopes.add(scope)
        if self._cut:
            scope.cancel()

    def forget(self, scope: anyio.CancelScope) -> None:
        self._scopes.discard(scope)


class ShutdownMiddleware:
    """Run each request so that `Shutdown.cut_all` ends it with a proper answer."""

    def __init__(self, app: ASGIApp, *, shutdown: Shutdown) -> None:
        self.app = app
        self.shutdown = shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started: list[Message] = []  # the response head, once sent
        finished = False

        async def tracked_send(message: Message) -> None:
            nonlocal finished
            if message["type"] == "http.response.start":
                started.append(message)
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished = True
            await send(message)

        with anyio.CancelScope() as cancel:
            self.shutdown.track(cancel)
            try:
                await self.app(scope, receive, tracked_send)
            finally:
                self.shutdown.forget(cancel)
        if not cancel.cancelled_caught or finished:
            return
        error = shutting_down()
        if not started:
            await responses.error(error)(scope, receive, send)
        elif dict(started[0].get("headers", [])).get(b"content-type", b"").startswith(EVENT_STREAM):
            await send({"type": "http.response.body", "body": encode_error(error)})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
