"""API keys: `Authorization: Bearer <key>` on every route but the probes, in constant time.

With no keys configured the middleware is not installed at all. The presented key is compared
with `hmac.compare_digest` against every configured key (no early exit), and neither the
header nor any key is ever logged. Failures are 401 `Unauthorized` in the envelope.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from hiagent_host.api import responses
from hiagent_host.api.console import PUBLIC_PATHS
from hiagent_host.errors import UNAUTHORIZED, HostError

# Liveness, readiness and scraping work without a key. /docs is a static page with no data in
# it (a browser cannot send a bearer header to open it); the page asks for the key and sends
# it with every request it makes, starting with /openapi.json.
# The console's page and script are public for the same reason (api/console.py).
EXEMPT_PATHS: Final = frozenset({"/ping", "/v1/health", "/metrics", "/docs"}) | PUBLIC_PATHS
_BEARER: Final = b"bearer "


class BearerAuthMiddleware:
    def __init__(self, app: ASGIApp, *, keys: Iterable[str]) -> None:
        self.app = app
        self._keys = tuple(k.encode() for k in keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        problem = self._check(scope)
        if problem is None:
            await self.app(scope, receive, send)
            return
        await responses.error(HostError(problem, code=UNAUTHORIZED, http_status=401))(
            scope, receive, send
        )

    def _check(self, scope: Scope) -> str | None:
        presented = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                presented = value
                break
        if presented is None:
            return "missing Authorization header; send 'Authorization: Bearer <api key>'"
        if presented[: len(_BEARER)].lower() != _BEARER:
            return "the Authorization header must use the Bearer scheme"
        token = presented[len(_BEARER) :].strip()
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(token, key)
        return None if matched else "invalid API key"
