"""Answers given before the request body was read (401, 413, 422, 404): keep-alive stays sound.

A pure ASGI middleware, outermost. HTTP/1.1 can only carry the next request on a connection
once this one's body has been read; Hypercorn closes the connection otherwise, and a client
that was not told would send its next request into a closing socket. So when the response
starts before the body has been read:

- the rest of the body, up to `DRAIN_MAX_BYTES` in all (by its `Content-Length`, or as a
  chunked body arrives), is read and dropped first, waiting for it at most `DRAIN_WAIT_S`: the
  connection stays usable;
- otherwise (a larger body, or one that does not come in time) the response says
  `Connection: close`, and the server closes the connection after it.
"""

from __future__ import annotations

from typing import Final

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A body still to come of at most this many bytes is read and dropped before an early answer
# (many clients send their whole body before they read: closing on them loses the answer).
DRAIN_MAX_BYTES: Final = 64 * 1024 * 1024
# How long an early answer waits for such a body in all; a client that has not sent it by
# then (or never will) gets the answer with `Connection: close`.
DRAIN_WAIT_S: Final = 2.0
CLOSE: Final = (b"connection", b"close")


class KeepAliveMiddleware:
    """Drain a small unread body before an early answer, or close the connection after it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = _Body(scope, receive)

        async def send_after_body(message: Message) -> None:
            if message["type"] == "http.response.start" and not body.done:
                with anyio.move_on_after(DRAIN_WAIT_S):
                    await body.drain()
                if not body.done:
                    message = {**message, "headers": [*message.get("headers", []), CLOSE]}
            await send(message)

        await self.app(scope, body.receive, send_after_body)


class _Body:
    """The request body as the app reads it: how much is still to come."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self._receive = receive
        headers = dict(scope["headers"])
        self._chunked = b"transfer-encoding" in headers
        length = headers.get(b"content-length", b"0")
        self._declared = int(length) if length.isdigit() else None
        self._read = 0
        self.done = not self._chunked and self._declared == 0

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._read += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.done = True
        elif message["type"] == "http.disconnect":
            self.done = True  # nothing more will come: nothing to drain
        return message

    async def drain(self) -> None:
        """Read and drop the rest of the body while it stays within `DRAIN_MAX_BYTES`."""
        if not self._chunked and (self._declared is None or self._declared > DRAIN_MAX_BYTES):
            return  # too large to read for nothing (or unframed: h11 refuses those anyway)
        while not self.done and self._read <= DRAIN_MAX_BYTES:
            await self.receive()
