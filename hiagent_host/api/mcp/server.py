"""The /mcp endpoint: the official SDK's low-level Server on its Streamable HTTP session manager.

`tools/list` answers from the catalog (api/mcp/catalog.py) in the caller's language.
`tools/call` runs the tool exactly as /v1 RunPluginTool does (`api.tools.ToolRun`: the pool,
its validation and deadlines, secrets registered and scrubbed, metrics): a tool failure is a
result with `isError` and `structuredContent.error = {code, message, data}`; naming a tool
that is not exposed is a JSON-RPC error (invalid params). A streaming tool sends one progress
notification per item (when the caller asked for progress) and returns every item at the end.
Cancelling the request (`notifications/cancelled`, or closing the stream on 2026-07-28)
cancels the plugin call. Sessions are stateful, so handshake-era clients get a standalone
stream for `notifications/tools/list_changed` (api/mcp/changes.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final

import anyio
import mcp_types as types
import msgspec
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.subscriptions import ListenHandler
from mcp.shared.exceptions import MCPError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

import hiagent_host
from hiagent_host.api.mcp.catalog import ToolCatalog, ToolEntry, language_of
from hiagent_host.api.mcp.changes import ToolListChanges, session_id_of
from hiagent_host.api.mcp.plugin_config import PluginConfig
from hiagent_host.api.middleware import annotate
from hiagent_host.api.services import Services
from hiagent_host.api.tools import ToolCall, ToolRun
from hiagent_host.config import Config
from hiagent_host.errors import CANCELLED, TOOL_NOT_FOUND, HostError

SERVER_NAME: Final = "hiagent-host"
# A handshake-era session's standalone stream (server → client notifications) is a GET.
STREAM_METHOD: Final = "GET"
INSTRUCTIONS: Final = (
    "Every tool of the HiAgent plugins installed on this host. Tool names are "
    "<package>__<plugin>__<tool>; each runs in its plugin's own process."
)
_encoder = msgspec.json.Encoder()


class _Server(Server[Any]):
    """The SDK server, advertising `tools.listChanged` to handshake-era clients too."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True),
            experimental_capabilities,
            extensions,
        )


class McpEndpoint:
    """The ASGI app mounted at /mcp; `run(services)` must wrap its use (the app's lifespan)."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._server = _Server(
            SERVER_NAME,
            version=hiagent_host.__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            get_tool_input_schema=self._input_schema,
        )
        self._server.add_notification_handler(
            "notifications/initialized", types.NotificationParams, self._initialized
        )
        # The SDK opens an OpenTelemetry span per message by default; the host exports no
        # traces, and the no-op spans cost 0.1 ms of the 0.5 ms an MCP call adds (measured
        # in-process, echo fixture). `middleware` is the SDK's documented opt-out.
        self._server.middleware.clear()
        self._services: Services | None = None
        self._catalog: ToolCatalog | None = None
        self._changes: ToolListChanges | None = None
        self._plugin_config = PluginConfig(
            config.mcp.config_file, client_config=config.mcp.client_config
        )
        self._app: Any = None
        self._listen: ListenHandler | None = None
        self._streams: set[anyio.CancelScope] = set()
        self._draining = False

    @asynccontextmanager
    async def run(self, services: Services) -> AsyncIterator[None]:
        """Serve with `services` until the context is left (then every session is closed)."""
        mcp = self._config.mcp
        changes = ToolListChanges(
            services.packages,
            idle_timeout_s=mcp.session_idle_timeout_s,
            watch_interval_s=mcp.watch_interval_s,
        )
        listen = ListenHandler(changes.bus)
        self._server.add_request_handler(
            "subscriptions/listen", types.SubscriptionsListenRequestParams, listen
        )
        manager = StreamableHTTPSessionManager(
            app=self._server,
            stateless=False,
            max_request_body_size=self._config.server.max_body_bytes,
            session_idle_timeout=mcp.session_idle_timeout_s,
            max_sessions=mcp.max_sessions,
        )
        self._services = services
        self._catalog = ToolCatalog(services.packages, mcp)
        self._changes = changes
        self._listen = listen
        self._draining = False
        async with changes, manager.run():
            self._app = changes.track(manager.handle_request)
            try:
                yield
            finally:
                self.drain()
                self._app = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            raise RuntimeError("the MCP endpoint is used outside its run() context")
        if scope["method"] != STREAM_METHOD:
            await self._app(scope, receive, send)
            return
        if self._draining:
            await Response(status_code=503, headers={"Retry-After": "1"})(scope, receive, send)
            return
        with anyio.CancelScope() as stream:
            self._streams.add(stream)
            try:
                await self._app(scope, receive, send)
            finally:
                self._streams.discard(stream)

    def drain(self) -> None:
        """The host is stopping: end the streams that never end by themselves (handshake-era
        GET streams, 2026 `subscriptions/listen` streams), so they do not hold the graceful
        shutdown for its whole length; calls in flight finish as usual."""
        self._draining = True
        for stream in list(self._streams):
            stream.cancel()
        if self._listen is not None:
            self._listen.close()

    # ---- handlers ----------------------------------------------------------------------

    async def _initialized(self, ctx: Any, params: types.NotificationParams) -> None:
        self._remember(ctx)

    def _remember(self, ctx: Any) -> None:
        if self._changes is not None:
            self._changes.remember(session_id_of(ctx.request), ctx.session)

    async def _list_tools(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        self._remember(ctx)
        catalog = await self._need_catalog().refresh()
        language = language_of(_header(ctx, "accept-language"), self._config.mcp.language)
        return types.ListToolsResult(tools=[e.as_tool(language) for e in catalog.entries])

    async def _call_tool(
        self, ctx: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        self._remember(ctx)
        entry = await self._need_catalog().find(params.name)
        if entry is None:
            raise MCPError(
                types.INVALID_PARAMS,
                f"unknown tool {params.name!r}; tools/list names every tool this host exposes",
                data={"code": TOOL_NOT_FOUND, "tool": params.name},
            )
        if isinstance(ctx.request, Request):
            annotate(
                ctx.request,
                pkg=entry.package,
                version=entry.version,
                plugin=entry.plugin,
                tool=entry.tool,
            )
        services = self._need_services()
        try:
            cfg, operator_values = self._plugin_config.for_call(
                entry.package, entry.plugin, getattr(ctx.request, "headers", None)
            )
        except HostError as exc:
            return error_result(exc)
        call = ToolCall(
            pkg=entry.package,
            version=entry.version,
            plugin=entry.plugin,
            tool=entry.tool,
            input=dict(params.arguments or {}),
            cfg=cfg,
            timeout_s=None,
        )
        run = ToolRun(services, call, extra_secrets=operator_values)
        try:
            if entry.streams:
                return await _streamed(ctx, run)
            return ok_result(await run.result())
        except HostError as exc:
            return error_result(exc)  # already counted and scrubbed by ToolRun
        except anyio.get_cancelled_exc_class():
            run.outcome(CANCELLED)
            raise

    def _input_schema(self, name: str) -> dict[str, Any] | None:
        """For the SDK's `Mcp-Param-*` header checks: the schema from the last catalog built
        (without this the SDK would run tools/list for every call)."""
        entry = None if self._catalog is None else self._catalog.current.by_name.get(name)
        return None if entry is None else entry.input_schema

    def _need_catalog(self) -> ToolCatalog:
        if self._catalog is None:
            raise RuntimeError("the MCP endpoint is used outside its run() context")
        return self._catalog

    def _need_services(self) -> Services:
        if self._services is None:
            raise RuntimeError("the MCP endpoint is used outside its run() context")
        return self._services


async def _streamed(ctx: Any, run: ToolRun) -> types.CallToolResult:
    """Relay a streaming tool: a progress notification per item, every item in the result."""
    items: list[Any] = []
    try:
        async with run.stream() as stream:
            async for item in stream:
                items.append(item)
                await ctx.session.report_progress(len(items), None, _text(item))
    except HostError as exc:  # the pool's error, secrets masked
        run.outcome(exc.code)
        raise
    run.outcome("ok")
    text = "".join(items) if all(isinstance(i, str) for i in items) else _text(items)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content={"items": items},
    )


def ok_result(result: Any) -> types.CallToolResult:
    """A tool's result: its JSON (a string as itself) as text, and as `structuredContent.result`."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=_text(result))],
        structured_content={"result": result},
    )


def error_result(exc: HostError) -> types.CallToolResult:
    """A tool failure, as MCP wants it: a result with `isError`, carrying the code and message."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"{exc.code}: {exc.message}")],
        structured_content={
            "error": {"code": exc.code, "message": exc.message, "data": _jsonable(exc.data)}
        },
        is_error=True,
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else _encoder.encode(value).decode()


def _jsonable(value: Any) -> Any:
    try:
        _encoder.encode(value)
    except (TypeError, ValueError, OverflowError):
        return repr(value)
    return value


def _header(ctx: Any, name: str) -> str | None:
    headers: Mapping[str, str] | None = getattr(ctx.request, "headers", None)
    return None if headers is None else headers.get(name)


__all__ = ["McpEndpoint", "ToolEntry", "error_result", "ok_result"]
