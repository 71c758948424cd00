"""`notifications/tools/list_changed` to every connected MCP client when the tool list changes.

Two eras of the protocol, two ways to reach a client:
- handshake era (2025-xx, stateful sessions): on the session's standalone stream (the client's
  GET). A session is remembered from its first message carrying `Mcp-Session-Id` and forgotten
  when the client deletes it, when the SDK answers 404 for it, or once it has had no request
  in flight for the SDK's idle timeout (the SDK has closed it by then);
- 2026-07-28 (no sessions): on every `subscriptions/listen` stream asking for tool changes,
  through the SDK's subscription bus.

Changes come from the package manager's listener (installs, replacements and deletions made in
this process) and, every `mcp.watch_interval_s`, from a look at the install records, which
catches what other processes (Redis workers, other Hypercorn workers) changed.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ToolsListChanged
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hiagent_host.errors import HostError
from hiagent_host.packages import PackageEvent, PackageManager

log = logging.getLogger(__name__)

SESSION_HEADER: Final = b"mcp-session-id"
# The SDK answers this for a session it does not know (any more).
UNKNOWN_SESSION_STATUS: Final = 404

Fingerprint = tuple[tuple[str, str, str, str], ...]


@dataclass
class _Session:
    session: ServerSession | None = None
    in_flight: int = 0
    idle_since: float = 0.0


class ToolListChanges:
    """Who to tell, and telling them (see the module docstring)."""

    def __init__(
        self, packages: PackageManager, *, idle_timeout_s: float, watch_interval_s: float
    ) -> None:
        self.bus = InMemorySubscriptionBus()
        self._packages = packages
        self._idle_timeout_s = idle_timeout_s
        self._watch_interval_s = watch_interval_s
        self._sessions: dict[str, _Session] = {}
        self._fingerprint: Fingerprint | None = None
        self._fingerprint_lock = threading.Lock()
        self._tg: anyio.abc.TaskGroup | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._loop_thread: int | None = None

    async def __aenter__(self) -> ToolListChanges:
        self._token = anyio.lowlevel.current_token()
        self._loop_thread = threading.get_ident()
        self._fingerprint = await anyio.to_thread.run_sync(self._read_fingerprint)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        if self._watch_interval_s > 0:
            self._tg.start_soon(self._watch)
        self._packages.add_listener(self._on_package_event)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._packages.remove_listener(self._on_package_event)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
            self._tg = None

    # ---- sessions ----------------------------------------------------------------------

    def remember(self, session_id: str | None, session: ServerSession) -> None:
        """A handshake-era session's message arrived: it is told about changes from now on."""
        if session_id is None:
            return
        entry = self._sessions.setdefault(session_id, _Session(idle_since=time.monotonic()))
        entry.session = session

    def track(self, app: ASGIApp) -> ASGIApp:
        """`app` with the sessions' HTTP activity observed (ends, deletions, idleness)."""

        async def tracked(scope: Scope, receive: Receive, send: Send) -> None:
            session_id = _session_id(scope)
            if session_id is None:
                await app(scope, receive, send)
                return
            entry = self._sessions.get(session_id)
            if entry is not None:
                entry.in_flight += 1
            status = 0

            async def watch(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, watch)
            finally:
                entry = self._sessions.get(session_id)
                if entry is not None:
                    entry.in_flight = max(0, entry.in_flight - 1)
                    entry.idle_since = time.monotonic()
                    ended = scope["method"] == "DELETE" and 200 <= status < 300
                    if ended or status == UNKNOWN_SESSION_STATUS:
                        self._sessions.pop(session_id, None)

        return tracked

    def _live(self) -> list[ServerSession]:
        now = time.monotonic()
        for session_id, entry in list(self._sessions.items()):
            if not entry.in_flight and now - entry.idle_since > self._idle_timeout_s:
                del self._sessions[session_id]
        return [e.session for e in self._sessions.values() if e.session is not None]

    # ---- changes -----------------------------------------------------------------------

    async def changed(self) -> None:
        """Tell every client that the tool list changed."""
        for session in self._live():
            await session.send_tool_list_changed()  # best effort: never raises
        await self.bus.publish(ToolsListChanged())

    def _on_package_event(self, event: PackageEvent) -> None:
        """A package listener (the installing thread): hand the change to the event loop."""
        fingerprint = self._read_fingerprint()
        with self._fingerprint_lock:
            self._fingerprint = fingerprint
        if threading.get_ident() == self._loop_thread:
            self._spawn()
            return
        try:
            anyio.from_thread.run_sync(self._spawn, token=self._token)
        except RuntimeError as exc:  # the event loop is gone
            log.debug("package event after MCP closed: %s", exc)

    def _spawn(self) -> None:
        if self._tg is not None:
            self._tg.start_soon(self.changed)

    async def _watch(self) -> None:
        while True:
            await anyio.sleep(self._watch_interval_s)
            try:
                fingerprint = await anyio.to_thread.run_sync(self._read_fingerprint)
            except HostError as exc:  # e.g. the packages store not read yet: look again later
                log.debug("MCP records watch: %s", exc.message)
                continue
            with self._fingerprint_lock:
                moved = fingerprint != self._fingerprint
                self._fingerprint = fingerprint
            if moved:
                await self.changed()

    def _read_fingerprint(self) -> Fingerprint:
        """What identifies the installed builds: a change means installed, replaced or deleted."""
        return tuple(
            (r.dir_name, r.version_dir, r.build, r.installed_at) for r in self._packages.list()
        )


def _session_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == SESSION_HEADER:
            text: str = value.decode("latin-1")
            return text
    return None


def session_id_of(request: Any) -> str | None:
    """The `Mcp-Session-Id` of a Starlette request (None for other transports)."""
    headers = getattr(request, "headers", None)
    return None if headers is None else headers.get(SESSION_HEADER.decode())
