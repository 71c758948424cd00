"""Tool routes: RunPluginTool (JSON or SSE), its adapter-runtime form, and RunPluginValidate.

Secret config values (per the plugin's config schema, plus any the caller adds) are masked by
the pool, in the errors that come back and in every log; the raw `cfg` header is never
logged. `ToolRun` is that call path, shared with the MCP endpoint (api/mcp/).
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

import msgspec
from packaging.utils import canonicalize_name
from starlette.requests import Request
from starlette.responses import Response

from hiagent_host.api import models, requests, responses
from hiagent_host.api.endpoints import endpoint, raw_endpoint
from hiagent_host.api.middleware import annotate
from hiagent_host.api.services import Services
from hiagent_host.api.sse import EventStream
from hiagent_host.errors import INVALID_REQUEST, PACKAGE_NOT_FOUND, HostError
from hiagent_host.redact import NO_SECRETS, Secrets

CFG_HEADER: Final = "cfg"
STREAM_KEY: Final = "stream"
# Metrics label for calls naming no installed package (keeps label cardinality bounded).
UNKNOWN_PACKAGE: Final = "<unknown>"
UNKNOWN_OUTCOMES: Final = frozenset({PACKAGE_NOT_FOUND, INVALID_REQUEST})


class ToolCall(msgspec.Struct, kw_only=True):
    pkg: str
    version: str
    plugin: str
    tool: str
    input: dict[str, Any]
    cfg: dict[str, Any] | None
    timeout_s: float | None


@endpoint(models.RunPluginTool)
async def run_plugin_tool(request: Request, s: Services, body: models.RunPluginTool) -> Response:
    """Run one tool; `stream: true` answers with server-sent events."""
    call = ToolCall(
        pkg=body.pkg,
        version=body.version,
        plugin=body.plugin,
        tool=body.tool,
        input=body.input or {},
        cfg=body.cfg,
        timeout_s=body.timeout_s,
    )
    return await _run(request, s, call, stream=body.stream)


@raw_endpoint
async def run_plugin_tool_adapter(request: Request, s: Services) -> Response:
    """RunPluginTool: names in the query, the input as the body, the config in header `cfg`."""
    query = requests.convert(dict(request.query_params), models.AdapterQuery, where="query")
    cfg = _cfg_header(request)
    raw = await requests.read_body(request, s.config.server.max_body_bytes)
    tool_input = requests.decode(raw, dict[str, Any])
    stream = tool_input.pop(STREAM_KEY, False)
    if not isinstance(stream, bool):
        raise requests.invalid("`stream` must be a boolean", STREAM_KEY)
    call = ToolCall(
        pkg=query.pkg,
        version=query.version,
        plugin=query.plugin,
        tool=query.tool,
        input=tool_input,
        cfg=cfg,
        timeout_s=query.timeout_s,
    )
    return await _run(request, s, call, stream=stream)


def _cfg_header(request: Request) -> dict[str, Any] | None:
    raw = request.headers.get(CFG_HEADER)
    if raw is None or not raw.strip():
        return None
    # Header values arrive as latin-1; clients send UTF-8 JSON.
    data = raw.encode("latin-1")  # secret-bearing: never logged, never echoed in an error
    try:
        value = msgspec.json.decode(data)
    except msgspec.DecodeError:
        raise requests.bad_request("header `cfg` is not valid JSON", field=CFG_HEADER) from None
    except RecursionError:
        raise requests.too_deep("header `cfg`", CFG_HEADER) from None
    requests.check_depth(value, "header `cfg`", CFG_HEADER)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise requests.invalid("header `cfg` must be a JSON object", CFG_HEADER)
    return value


@endpoint(models.RunPluginValidate)
async def run_plugin_validate(
    request: Request, s: Services, body: models.RunPluginValidate
) -> None:
    """Check a config with the plugin; a config it rejects is a 4xx with the plugin's reason."""
    annotate(request, pkg=body.pkg, version=body.version, plugin=body.plugin)
    await s.pool.validate(body.pkg, body.version, body.plugin, body.cfg)


async def _run(request: Request, s: Services, call: ToolCall, *, stream: bool) -> Response:
    annotate(request, pkg=call.pkg, version=call.version, plugin=call.plugin, tool=call.tool)
    run = ToolRun(s, call)
    if stream:
        return EventStream(
            run.stream,
            keepalive_s=s.config.server.sse_keepalive_s,
            on_outcome=run.outcome,
        )
    return responses.ok(await run.result())


class ToolRun:
    """One tool call through the pool, as /v1 and /mcp both make it.

    The pool masks the secret config values (per the plugin's config schema, plus
    `extra_secrets`) in the errors that come back, in the log lines written during the call
    and in the plugin process's stderr; the call's outcome and duration are counted in the
    metrics once.
    """

    def __init__(self, s: Services, call: ToolCall, *, extra_secrets: Iterable[str] = ()) -> None:
        self._s = s
        self.call = call
        self.hidden = Secrets(extra_secrets) if extra_secrets else NO_SECRETS
        self._label = _package_label(call.pkg)
        self._start = time.perf_counter()

    def outcome(self, result: str) -> None:
        """Count the call: "ok", an error code, or why it ended early."""
        package = UNKNOWN_PACKAGE if result in UNKNOWN_OUTCOMES else self._label
        self._s.metrics.observe_tool_call(package, result, time.perf_counter() - self._start)

    async def result(self) -> Any:
        """The tool's result; a failure (secrets masked by the pool) is counted and raised."""
        call = self.call
        try:
            result = await self._s.pool.run_tool(
                call.pkg,
                call.version,
                call.plugin,
                call.tool,
                call.input,
                call.cfg,
                timeout_s=call.timeout_s,
                secrets=self.hidden,
            )
        except HostError as exc:  # the pool's error, secrets masked
            self.outcome(exc.code)
            raise
        self.outcome("ok")
        return result

    def stream(self) -> AbstractAsyncContextManager[AsyncIterator[Any]]:
        """The tool's stream (leaving it early cancels the call); the caller counts it."""
        call = self.call
        return self._s.pool.stream_tool(
            call.pkg,
            call.version,
            call.plugin,
            call.tool,
            call.input,
            call.cfg,
            timeout_s=call.timeout_s,
            secrets=self.hidden,
        )


@functools.lru_cache(maxsize=1024)
def _package_label(pkg: str) -> str:
    return str(canonicalize_name(pkg))
