"""Server-sent events for streaming tool calls, exactly as http-api.md describes them.

One event per item: an object whose keys are all among event/data/id/retry becomes those
fields (nulls omitted); a string is sent raw (one `data:` line per line); anything else is
`data: <json>`. A failure before the stream opens is an ordinary JSON error response; after
it, `event: error` with the error object. Success ends with `event: done` (`data: {}`). Idle
streams get `: keep-alive` comments; a client that goes away cancels the call.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, Final

import anyio
import msgspec
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from hiagent_host.api import responses
from hiagent_host.errors import HostError

log = logging.getLogger("hiagent_host.api.sse")

FIELDS: Final = frozenset({"event", "data", "id", "retry"})
DONE: Final = b"event: done\ndata: {}\n\n"
KEEPALIVE: Final = b": keep-alive\n\n"
HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # reverse proxies must not buffer the stream
]

_encoder = msgspec.json.Encoder()
# The SSE grammar's line ends, and only these: `str.splitlines` would also split on U+2028,
# U+0085, form feed and others, which JSON carries raw inside strings.
_LINE_END: Final = re.compile(r"\r\n|\r|\n")

# An outcome for metrics and the access log: "ok", an error code, or "disconnected".
OutcomeHook = Callable[[str], None]


def _lines(field: bytes, text: str) -> bytes:
    return b"".join(field + b": " + line.encode() + b"\n" for line in _LINE_END.split(text))


def _single_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


def encode_item(item: Any) -> bytes:
    """One stream item as one SSE event (terminated by the blank line)."""
    if isinstance(item, dict) and item and item.keys() <= FIELDS:
        out = b""
        if item.get("event") is not None:
            out += b"event: " + _single_line(str(item["event"])).encode() + b"\n"
        if item.get("id") is not None:
            out += b"id: " + _single_line(str(item["id"])).encode() + b"\n"
        retry = item.get("retry")
        if isinstance(retry, int) and not isinstance(retry, bool):
            out += b"retry: " + str(retry).encode() + b"\n"
        data = item.get("data")
        if data is not None:
            out += _lines(
                b"data", data if isinstance(data, str) else _encoder.encode(data).decode()
            )
        return out + b"\n"
    if isinstance(item, str):
        return _lines(b"data", item) + b"\n"
    return b"data: " + _encoder.encode(item) + b"\n\n"


def encode_error(exc: HostError) -> bytes:
    return b"event: error\ndata: " + responses.encode_error(exc) + b"\n\n"


class _Channel:
    """The response body side: whole events, one writer at a time, last write time kept."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._lock = anyio.Lock()
        self.last_sent = time.monotonic()

    async def write(self, chunk: bytes, *, more_body: bool = True) -> None:
        async with self._lock:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": more_body})
            self.last_sent = time.monotonic()


class EventStream(Response):
    """A response that opens a tool stream and relays it as SSE.

    `open_stream()` is entered first: a HostError there becomes a JSON error response. The
    context is left (cancelling the call in the plugin) when the stream ends or the client
    disconnects.
    """

    def __init__(
        self,
        open_stream: Callable[[], AbstractAsyncContextManager[AsyncIterator[Any]]],
        *,
        keepalive_s: float,
        on_outcome: OutcomeHook | None = None,
    ) -> None:
        super().__init__(status_code=200, media_type="text/event-stream")
        self._open = open_stream
        self._keepalive_s = keepalive_s
        self._on_outcome = on_outcome or (lambda outcome: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with AsyncExitStack() as stack:
            try:
                items = await stack.enter_async_context(self._open())
            except HostError as exc:
                self._on_outcome(exc.code)
                await responses.error(exc)(scope, receive, send)
                return
            outcome = "disconnected"
            async with anyio.create_task_group() as tg:
                tg.start_soon(_watch_disconnect, receive, tg.cancel_scope)
                await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
                channel = _Channel(send)
                tg.start_soon(self._keep_alive, channel)
                outcome = await self._relay(items, channel)
                await channel.write(b"", more_body=False)
                tg.cancel_scope.cancel()
            self._on_outcome(outcome)

    async def _relay(self, items: AsyncIterator[Any], channel: _Channel) -> str:
        try:
            async for item in items:
                await channel.write(encode_item(item))
        except HostError as exc:
            await channel.write(encode_error(exc))
            return exc.code
        except Exception:
            log.exception("stream failed after its first byte")
            failure = responses.internal_error()
            await channel.write(encode_error(failure))
            return failure.code
        await channel.write(DONE)
        return "ok"

    async def _keep_alive(self, channel: _Channel) -> None:
        while True:
            delay = channel.last_sent + self._keepalive_s - time.monotonic()
            if delay > 0:
                await anyio.sleep(delay)
            else:
                await channel.write(KEEPALIVE)


async def _watch_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return
