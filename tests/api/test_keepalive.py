"""Early answers (401, 413, 422) on a keep-alive connection: the next request is answered too.

A raw socket client sends a request's headers, checks (bounded) that no answer has come while
the body is missing, sends the body, reads the answer, then sends a second request on the
same connection.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import h11

from hiagent_host.api.middleware import DRAIN_MAX_BYTES
from tests.api.conftest import Installed
from tests.api.support import LiveServer

# Bound for one answer on the raw socket.
ANSWER_TIMEOUT_S: Final = 30.0
# How long the client looks for a (premature) answer before it sends the body.
EARLY_LOOK_S: Final = 0.2


@contextmanager
def connection(server: LiveServer) -> Iterator[tuple[socket.socket, h11.Connection]]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=ANSWER_TIMEOUT_S) as sock:
        yield sock, h11.Connection(our_role=h11.CLIENT)


def send(sock: socket.socket, conn: h11.Connection, *events: h11.Event) -> None:
    for event in events:
        data = conn.send(event)
        if data:
            sock.sendall(data)


def head(conn: h11.Connection, target: str, length: int, **headers: str) -> h11.Request:
    fields = [("host", "127.0.0.1"), ("content-type", "application/json")]
    fields += [("content-length", str(length)), *headers.items()]
    return h11.Request(method="POST", target=target, headers=fields)


def answer(sock: socket.socket, conn: h11.Connection) -> tuple[h11.Response, bytes]:
    """The next complete response (h11 checks the framing)."""
    response: h11.Response | None = None
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(65536))
            continue
        if isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            assert response is not None
            return response, body
        else:
            raise AssertionError(f"unexpected {event!r}")


def nothing_yet(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], EARLY_LOOK_S)
    return not readable


def late_body_then_reuse(server: LiveServer, target: str, body: bytes) -> int:
    """Headers, (no answer yet), body, the answer, then a second request: its status."""
    with connection(server) as (sock, conn):
        send(sock, conn, head(conn, target, len(body)))
        assert nothing_yet(sock)  # the server waits for the small body before it answers
        send(sock, conn, h11.Data(data=body), h11.EndOfMessage())
        first, _ = answer(sock, conn)
        assert (b"connection", b"close") not in first.headers
        conn.start_next_cycle()
        send(
            sock, conn, head(conn, "/v1/ListPackages", 2), h11.Data(data=b"{}"), h11.EndOfMessage()
        )
        second, _ = answer(sock, conn)
        return first.status_code * 1000 + second.status_code


def test_a_401_before_the_body_leaves_the_connection_usable(guarded: LiveServer) -> None:
    assert late_body_then_reuse(guarded, "/v1/ListPackages", b"{}") == 401_401


def test_a_422_from_the_query_string_leaves_the_connection_usable(
    server: LiveServer, installed: Installed
) -> None:
    target = "/v1/RunPluginToolAdapterRuntime?pkg=hiagent-plugin-echo&timeout_s=soon"
    assert late_body_then_reuse(server, target, b'{"text": "hi"}') == 422_200


def test_a_413_drains_the_body_the_client_sends_and_keeps_the_connection(
    server: LiveServer,
) -> None:
    body = b"[" + b"1," * (600 * 1024) + b"1]"  # over max_body_bytes (1 MiB)
    assert late_body_then_reuse(server, "/v1/ListPackages", body) == 413_200


def test_an_early_answer_to_a_body_too_large_to_drain_says_connection_close_at_once(
    server: LiveServer,
) -> None:
    assert_closed_after_413(server, DRAIN_MAX_BYTES + 1)


def test_an_early_answer_to_a_body_that_never_comes_says_connection_close(
    server: LiveServer,
) -> None:
    assert_closed_after_413(server, 2 * 1024 * 1024)  # waits DRAIN_WAIT_S for it, then closes


def assert_closed_after_413(server: LiveServer, length: int) -> None:
    with connection(server) as (sock, conn):
        send(sock, conn, head(conn, "/v1/ListPackages", length))
        first, body = answer(sock, conn)
        assert first.status_code == 413
        assert (b"connection", b"close") in first.headers
        assert b"PayloadTooLarge" in body
        assert sock.recv(1) == b""  # the server closed its end: no request is left hanging
