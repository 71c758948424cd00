"""From a typed handler to a Starlette endpoint: read and decode the body, envelope the result.

A handler is `async def h(request, services, body) -> data | Response`; it raises HostError for
every expected failure. `endpoint(Body)(h)` reads the body under the size cap, decodes it into
`Body` (named 422s, 400 for malformed JSON, 413 over the cap), and wraps plain data as
`{"data": …, "error": null}` and a HostError as the error envelope.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from hiagent_host.api import responses
from hiagent_host.api.requests import decode, read_body
from hiagent_host.api.services import Services
from hiagent_host.errors import HostError

B = TypeVar("B")
Handler = Callable[[Request, Services, B], Awaitable[Any]]
Endpoint = Callable[[Request], Awaitable[Response]]


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def endpoint(body_type: type[B]) -> Callable[[Handler[B]], Endpoint]:
    def wrap(handler: Handler[B]) -> Endpoint:
        async def run(request: Request) -> Response:
            found = services(request)
            try:
                raw = await read_body(request, found.config.server.max_body_bytes)
                result = await handler(request, found, decode(raw, body_type))
            except HostError as exc:
                return responses.error(exc)
            return result if isinstance(result, Response) else responses.ok(result)

        run.__name__ = handler.__name__
        run.__doc__ = handler.__doc__
        return run

    return wrap


def raw_endpoint(handler: Callable[[Request, Services], Awaitable[Any]]) -> Endpoint:
    """A handler that reads the request itself (query, headers, body); errors still enveloped."""

    async def run(request: Request) -> Response:
        try:
            result = await handler(request, services(request))
        except HostError as exc:
            return responses.error(exc)
        return result if isinstance(result, Response) else responses.ok(result)

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run
