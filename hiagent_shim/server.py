"""Serve one package's plugins on the wire: dispatch requests, run calls, answer each once.

The event loop reads the wire and runs every call as a task: async tools directly, sync tools
(through the SDK) on the loop's default executor, a bounded thread pool. EOF, SIGTERM/SIGINT or
`shutdown` cancel what is in flight (each call answers `Cancelled`) and the process exits; a
watchdog ends it anyway `lifecycle.EXIT_WATCHDOG_S` later if a plugin has wedged the loop (it is
armed by the signal handler, or by a thread that sees the wire hang up, even then). Nothing here
prints on the wire but frames.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import hiagent_shim
from hiagent_shim import protocol
from hiagent_shim.describe import handshake
from hiagent_shim.lifecycle import EXIT_OK, on_stop_signals, start_watchdog
from hiagent_shim.plugins import PACKAGE_ENV, Package, ShimError, load_package, to_shim_error
from hiagent_shim.protocol import ProtocolFault
from hiagent_shim.report import failure, note
from hiagent_shim.streams import async_items, awaited, close_items
from hiagent_shim.threads import CallThreads, ToolExecutor, ToolLoop, track
from hiagent_shim.wire import Line, OversizeLine, Stdio, WireReader, WireWriter

DEFAULT_STREAM_WINDOW: Final = 64
DEFAULT_THREAD_POOL_SIZE: Final = 32
MIN_FRAME_BYTES: Final = 1024
# Once stopping, cancelled calls get this long to unwind before the process exits anyway.
STOP_UNWIND_S: Final = 1.0
SHUTTING_DOWN: Final = "ShuttingDown"
# A call allocates a few dozen containers: at CPython's default threshold (700) the youngest
# generation is collected every dozen calls, each time walking the objects of every call in
# flight (~10 % of a warm call's CPU in the shim, bench/pool.py). Collected this rarely, cyclic
# garbage waits a little longer; nothing else changes.
CPYTHON_GEN0_THRESHOLD: Final = 700
GC_GEN0_THRESHOLD: Final = 5000
_decode: Final = json.JSONDecoder().decode  # one decoder for every frame
_DONE: Final = object()


@dataclass(eq=False, slots=True)
class Call:
    """One request in flight; `acked` and `window` pace a stream; `threads` its executor work."""

    id: int
    label: str
    task: asyncio.Task[None] | None = None
    acked: int = 0
    window: asyncio.Event | None = None  # made when a stream first waits for an ack
    threads: CallThreads = field(default_factory=CallThreads)


class Server:
    """The request loop of one shim process."""

    def __init__(self, stdio: Stdio, loop: ToolLoop) -> None:
        self._loop = loop
        self._reader = WireReader(
            stdio.wire_in, loop, on_line=self._on_line, on_end=self.stop, on_hangup=start_watchdog
        )
        self._writer = WireWriter(stdio.wire_out, loop, on_error=self._wire_broken)
        self._package: Package | None = None
        self._max_frame_bytes = self._reader.splitter.max_frame_bytes
        self._stream_window = DEFAULT_STREAM_WINDOW
        self._calls: dict[int, Call] = {}
        self._stopping = asyncio.Event()
        self._shutdown_ids: list[int] = []
        self._methods: dict[str, Callable[[int, dict[str, Any]], None]] = {
            protocol.INITIALIZE: self._initialize,
            protocol.PING: self._ping,
            protocol.SHUTDOWN: self._shutdown,
            protocol.METADATA: self._metadata,
            protocol.RUN_TOOL: self._run_tool,
            protocol.VALIDATE: self._validate,
        }

    async def serve(self) -> int:
        """Serve until stdin closes, a signal arrives or `shutdown` is called."""
        self._reader.start()
        await self._stopping.wait()
        await self._cancel_all()
        for call_id in self._shutdown_ids:
            self._send(protocol.result_frame(call_id, None, self._max_frame_bytes))
        self._writer.drain()
        return EXIT_OK

    def stop(self, reason: str) -> None:
        """Begin stopping (idempotent); the watchdog guarantees the exit."""
        if self._stopping.is_set():
            return
        start_watchdog()
        self._stopping.set()
        note(f"stopping: {reason}")

    def _wire_broken(self, exc: OSError) -> None:
        self.stop(f"the wire is closed: {exc}")  # the host is gone: nobody is left to answer

    # -- reading ---------------------------------------------------------------------------

    def _on_line(self, line: Line) -> None:
        if isinstance(line, OversizeLine):
            limit = self._reader.splitter.max_frame_bytes
            message = f"a request of {line.size} bytes exceeds max_frame_bytes ({limit})"
            detail = {"size": line.size, "limit": limit}
            self._fault(line.id, ProtocolFault(protocol.INVALID_REQUEST, message, detail))
            return
        try:
            message = _decode(line.decode())
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
            self._fault(None, ProtocolFault(protocol.PARSE_ERROR, f"not a JSON document: {exc}"))
            return
        try:
            self._dispatch(message)
        except ProtocolFault as fault:
            self._fault(_request_id(message), fault)
        except Exception as exc:  # noqa: BLE001 - a fault of the shim's own, answered not fatal
            failure("the shim failed to dispatch a request:", exc)
            internal = ProtocolFault(protocol.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
            self._fault(_request_id(message), internal)

    def _dispatch(self, message: Any) -> None:
        if not isinstance(message, dict) or message.get("jsonrpc") != protocol.JSONRPC:
            raise ProtocolFault(protocol.INVALID_REQUEST, "not a JSON-RPC 2.0 message object")
        method = message.get("method")
        if not isinstance(method, str):
            raise ProtocolFault(protocol.INVALID_REQUEST, "the message has no method")
        params = message.get("params")
        if "id" not in message:
            self._notification(method, params)
            return
        call_id = _request_id(message)
        if call_id is None:
            raise ProtocolFault(protocol.INVALID_REQUEST, "a request id must be an integer")
        if call_id in self._calls:
            raise ProtocolFault(protocol.INVALID_REQUEST, f"request id {call_id} is in flight")
        handler = self._methods.get(method)
        if handler is None:
            raise ProtocolFault(protocol.METHOD_NOT_FOUND, f"no method {method!r}")
        if method != protocol.INITIALIZE and self._package is None:
            raise ProtocolFault(protocol.NOT_INITIALIZED, f"{method!r} before initialize")
        if self._stopping.is_set() and method not in (protocol.PING, protocol.SHUTDOWN):
            error = ShimError(SHUTTING_DOWN, "the plugin process is stopping", http_code=503)
            self._send(self._error_frame(call_id, error))
            return
        handler(call_id, _object(params))

    def _notification(self, method: str, params: Any) -> None:
        if method not in (protocol.CANCEL_REQUEST, protocol.STREAM_ACK):
            return  # unknown notifications are ignored, as JSON-RPC asks
        if not isinstance(params, dict) or _request_id(params) is None:
            note(f"ignoring {method} with malformed params")
            return
        call = self._calls.get(params["id"])
        if call is None:
            return  # the call has already been answered
        if method == protocol.CANCEL_REQUEST:
            self._cancel(call)
            return
        seq = params.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            call.acked = max(call.acked, seq + 1)
            if call.window is not None:
                call.window.set()

    # -- methods ---------------------------------------------------------------------------

    def _initialize(self, call_id: int, params: dict[str, Any]) -> None:
        if self._package is not None:
            raise ProtocolFault(protocol.INVALID_REQUEST, "already initialized")
        version = params.get("protocol_version")
        if version != hiagent_shim.PROTOCOL_VERSION:
            raise ProtocolFault(
                protocol.INVALID_PARAMS,
                f"protocol version {version!r} is not supported; "
                f"this shim speaks {hiagent_shim.PROTOCOL_VERSION}",
                {"expected": hiagent_shim.PROTOCOL_VERSION, "got": version},
            )
        max_frame_bytes = _int_param(params, "max_frame_bytes", MIN_FRAME_BYTES)
        stream_window = _int_param(params, "stream_window", 1)
        threads = DEFAULT_THREAD_POOL_SIZE
        if params.get("thread_pool_size") is not None:
            threads = _int_param(params, "thread_pool_size", 1)
        try:
            package = load_package(os.environ.get(PACKAGE_ENV))
        except ShimError as exc:
            self._send(self._error_frame(call_id, exc))
            return
        self._max_frame_bytes = max_frame_bytes
        self._reader.splitter.max_frame_bytes = max_frame_bytes
        self._stream_window = stream_window
        self._loop.set_default_executor(ToolExecutor(threads))
        self._package = package
        # What importing the plugins built lives as long as the process: leave it out of every
        # garbage collection from now on (a full one walks all of pydantic and the SDK).
        gc.freeze()
        gen0, gen1, gen2 = gc.get_threshold()
        if gen0 == CPYTHON_GEN0_THRESHOLD:  # unless the plugin chose its own
            gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
        self._send(protocol.result_frame(call_id, handshake(package), max_frame_bytes))

    def _ping(self, call_id: int, params: dict[str, Any]) -> None:
        self._send(protocol.result_frame(call_id, "pong", self._max_frame_bytes))

    def _shutdown(self, call_id: int, params: dict[str, Any]) -> None:
        self._shutdown_ids.append(call_id)
        self.stop("shutdown requested")

    def _metadata(self, call_id: int, params: dict[str, Any]) -> None:
        package = self._served()
        wanted = params.get("plugin")
        if wanted is not None and not isinstance(wanted, str):
            raise ProtocolFault(protocol.INVALID_PARAMS, "params.plugin must be a string")

        async def work(call: Call) -> dict[str, Any]:
            names = list(package.plugins) if wanted is None else [wanted]
            return {name: package.plugin(name).get_metadata() for name in names}

        self._start(call_id, f"metadata plugin={wanted!r}", work)

    def _run_tool(self, call_id: int, params: dict[str, Any]) -> None:
        package = self._served()
        plugin, tool = _str_param(params, "plugin"), _str_param(params, "tool")
        stream = params.get("stream", False)
        if not isinstance(stream, bool):
            raise ProtocolFault(protocol.INVALID_PARAMS, "params.stream must be a boolean")
        tool_input, cfg = params.get("input", {}), params.get("cfg")
        label = f"run_tool plugin={plugin!r} tool={tool!r}"

        async def work(call: Call) -> Any:
            cls = package.plugin(plugin)
            if stream:
                return await self._stream(call, cls.run_plugin_tool_stream(tool, tool_input, cfg))
            return await awaited(cls.run_plugin_tool(tool, tool_input, cfg))

        self._start(call_id, label, work)

    def _validate(self, call_id: int, params: dict[str, Any]) -> None:
        package = self._served()
        plugin, cfg = _str_param(params, "plugin"), params.get("cfg")

        async def work(call: Call) -> None:
            await awaited(package.plugin(plugin).run_plugin_validate(cfg))

        self._start(call_id, f"validate plugin={plugin!r}", work)

    # -- calls -----------------------------------------------------------------------------

    def _served(self) -> Package:
        if self._package is None:  # _dispatch checks this first; kept for the type checker
            raise ProtocolFault(protocol.NOT_INITIALIZED, "not initialized")
        return self._package

    def _start(self, call_id: int, label: str, work: Callable[[Call], Awaitable[Any]]) -> None:
        call = Call(call_id, label)
        self._calls[call_id] = call
        call.task = self._loop.start_task(self._run(call, work))

    async def _run(self, call: Call, work: Callable[[Call], Awaitable[Any]]) -> None:
        track(call.threads)  # this task's context: executor work it submits is the call's
        try:
            result = await work(call)
        except asyncio.CancelledError:
            self._answer(call, self._cancelled_frame(call))
            return
        except BaseException as exc:  # noqa: BLE001 - a tool's SystemExit is its call's error
            error = to_shim_error(exc)
            if error.code == type(exc).__name__:
                failure(f"call {call.id} ({call.label}) raised:", exc)
            else:
                note(f"call {call.id} ({call.label}) failed: {error.code}: {error.message}")
            self._answer(call, self._error_frame(call.id, error))
            return
        self._answer(call, protocol.result_frame(call.id, result, self._max_frame_bytes))

    async def _stream(self, call: Call, produced: Any) -> dict[str, int]:
        """Send each item as `$/stream`, at most `stream_window` ahead of the host's acks."""
        items = async_items(await awaited(produced))
        seq = 0
        try:
            while (item := await anext(items, _DONE)) is not _DONE:
                while seq >= call.acked + self._stream_window:
                    call.window = call.window or asyncio.Event()
                    call.window.clear()
                    await call.window.wait()
                frame = protocol.stream_item_frame(call.id, seq, item, self._max_frame_bytes)
                self._send(frame)
                seq += 1
        finally:
            await close_items(items)
        return {"items": seq}

    def _answer(self, call: Call, frame: bytes) -> None:
        """Send the one answer of `call`; later attempts (a cancel raced it) are dropped."""
        if self._calls.get(call.id) is call:
            del self._calls[call.id]
            self._send(frame)

    def _cancel(self, call: Call) -> None:
        """Answer `call` Cancelled now, then cancel its task (a thread cannot be stopped)."""
        self._answer(call, self._cancelled_frame(call))
        if call.task is not None:
            call.task.cancel()

    async def _cancel_all(self) -> None:
        calls = list(self._calls.values())
        for call in calls:
            self._cancel(call)
        tasks = [call.task for call in calls if call.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_UNWIND_S)

    # -- writing ---------------------------------------------------------------------------

    def _cancelled_frame(self, call: Call) -> bytes:
        abandoned = call.threads.busy()
        if abandoned:
            note(f"call {call.id} ({call.label}) cancelled: its tool thread is abandoned")
        return self._error_frame(call.id, protocol.cancelled(abandoned_thread=abandoned))

    def _error_frame(self, call_id: int, error: ShimError) -> bytes:
        return protocol.error_frame(
            call_id, protocol.application_error(error), self._max_frame_bytes
        )

    def _fault(self, call_id: int | None, fault: ProtocolFault) -> None:
        note(f"protocol fault (id {call_id}): {fault.message}")
        error = protocol.fault_error(fault)
        self._send(protocol.error_frame(call_id, error, self._max_frame_bytes))

    def _send(self, frame: bytes) -> None:
        self._writer.write(frame)


def _request_id(message: Any) -> int | None:
    value = message.get("id") if isinstance(message, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _object(params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ProtocolFault(protocol.INVALID_PARAMS, "params must be an object")
    return params


def _str_param(params: dict[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str):
        raise ProtocolFault(protocol.INVALID_PARAMS, f"params.{key} must be a string")
    return value


def _int_param(params: dict[str, Any], key: str, minimum: int) -> int:
    value = params.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        message = f"params.{key} must be an integer >= {minimum}"
        raise ProtocolFault(protocol.INVALID_PARAMS, message)
    return value


def run(stdio: Stdio) -> int:
    """Run the server on a fresh event loop in this (the main) thread; return the exit code."""
    loop = ToolLoop()
    asyncio.set_event_loop(loop)
    loop.set_default_executor(ToolExecutor(DEFAULT_THREAD_POOL_SIZE))
    server = Server(stdio, loop)
    on_stop_signals(loop, server.stop)
    return loop.run_until_complete(server.serve())
