"""The web console: `/` leads to `/console`, a static page and its script (no data in either).

Both files ship inside the package (`api/static/`) and load nothing from elsewhere, so the
console works offline. They are public, like /docs: everything the console shows comes from
/v1 calls that carry the API key the operator typed in (see docs/console.md).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Final

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

CONSOLE_PATH: Final = "/console"
SCRIPT_PATH: Final = "/console/console.js"
# The page and its script: public, because a browser cannot attach a bearer key to a
# navigation. Neither holds any data.
PUBLIC_PATHS: Final = frozenset({"/", CONSOLE_PATH, SCRIPT_PATH})
# The page may load only its own script and talk only to this server.
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src data:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _asset(name: str) -> bytes:
    return files("hiagent_host.api").joinpath("static", name).read_bytes()


async def root(request: Request) -> Response:
    """`/` leads to the console."""
    return RedirectResponse(CONSOLE_PATH, status_code=307)


async def page(request: Request) -> Response:
    """The console page."""
    return Response(
        _asset("console.html"), media_type="text/html; charset=utf-8", headers=_SECURITY_HEADERS
    )


async def script(request: Request) -> Response:
    """The console's script."""
    return Response(
        _asset("console.js"),
        media_type="text/javascript; charset=utf-8",
        headers=_SECURITY_HEADERS,
    )
