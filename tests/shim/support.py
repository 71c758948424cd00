"""Start the real shim in the session venv and talk to it: through `RpcPeer`, or raw frames."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream, Process

from hiagent_host.rpc import Handshake, RpcPeer, initialize
from hiagent_host.rpc.framing import FrameReader, OversizeFrame

# Starting a shim imports pydantic and the SDK: well under a second; this bounds a hang.
START_S: Final = 20.0
# Anything a live shim should do at once (answer, exit on EOF) is bounded by this.
STEP_S: Final = 10.0
MAX_FRAME_BYTES: Final = 64 * 1024
STREAM_WINDOW: Final = 4
CANCEL_GRACE_S: Final = 2.0


def shim_env(package: str, data_dir: Path) -> dict[str, str]:
    """The allow-listed environment a plugin process gets."""
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HIAGENT_PACKAGE_NAME": package,
        "HIAGENT_PLUGIN_DATA_DIR": str(data_dir),
    }


class Stderr:
    """Everything a process writes on stderr, collected as it comes."""

    def __init__(self) -> None:
        self.text = ""
        self._changed = anyio.Event()

    async def collect(self, stream: ByteReceiveStream) -> None:
        async for chunk in stream:
            self.text += chunk.decode("utf-8", "replace")
            self._changed.set()
            self._changed = anyio.Event()

    async def wait_for(self, needle: str, timeout_s: float = STEP_S) -> None:
        """Return once `needle` has appeared on stderr."""
        with anyio.fail_after(timeout_s):
            while needle not in self.text:
                await self._changed.wait()


@dataclass
class Shim:
    """A running shim and the host's end of its wire."""

    peer: RpcPeer
    process: Process
    stderr: Stderr
    handshake: Handshake | None

    async def run_tool(
        self,
        plugin: str,
        tool: str,
        tool_input: Any = None,
        cfg: Any = None,
        *,
        timeout_s: float | None = STEP_S,
    ) -> Any:
        params = {"plugin": plugin, "tool": tool, "input": tool_input or {}, "cfg": cfg}
        return await self.peer.call("run_tool", params, timeout_s=timeout_s)

    async def exit_status(self) -> int:
        with anyio.fail_after(STEP_S):
            return await self.process.wait()


def kill_group(process: Process) -> None:
    """SIGKILL the shim's process group (it and anything it left behind)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone, with every member of its group


def stdio(process: Process) -> tuple[ByteSendStream, ByteReceiveStream, ByteReceiveStream]:
    """The process's stdin, stdout and stderr (all piped by `start_process`)."""
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    return process.stdin, process.stdout, process.stderr


async def start_process(python: Path, package: str, data_dir: Path, *args: str) -> Process:
    return await anyio.open_process(
        [str(python), "-m", "hiagent_shim", *args],
        env=shim_env(package, data_dir),
        start_new_session=True,
    )


@asynccontextmanager
async def running_shim(
    python: Path,
    package: str,
    data_dir: Path,
    *,
    handshake: bool = True,
    max_frame_bytes: int = MAX_FRAME_BYTES,
    stream_window: int = STREAM_WINDOW,
    cancel_grace_s: float = CANCEL_GRACE_S,
    thread_pool_size: int | None = None,
) -> AsyncIterator[Shim]:
    """A shim serving `package`, initialized unless `handshake` is false; killed afterwards."""
    process = await start_process(python, package, data_dir)
    stdin, stdout, stderr_stream = stdio(process)
    stderr = Stderr()
    peer = RpcPeer(
        stdin,
        stdout,
        max_frame_bytes=max_frame_bytes,
        stream_window=stream_window,
        cancel_grace_s=cancel_grace_s,
    )
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(stderr.collect, stderr_stream)
            tg.start_soon(peer.run)
            try:
                answer = None
                if handshake:
                    answer = await initialize(
                        peer, timeout_s=START_S, thread_pool_size=thread_pool_size
                    )
                yield Shim(peer, process, stderr, answer)
            finally:
                kill_group(process)
    finally:
        with anyio.CancelScope(shield=True), anyio.fail_after(STEP_S):
            await process.aclose()


@dataclass
class RawShim:
    """A running shim spoken to in raw frames, for what `RpcPeer` would never send."""

    process: Process
    stderr: Stderr
    frames: FrameReader

    @property
    def stdin(self) -> ByteSendStream:
        assert self.process.stdin is not None
        return self.process.stdin

    async def send_line(self, line: bytes) -> None:
        await self.stdin.send(line + b"\n")

    async def close_stdin(self) -> None:
        await self.stdin.aclose()

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_line(json.dumps({"jsonrpc": "2.0", **message}).encode())

    async def request(self, call_id: int, method: str, params: Any = None) -> None:
        await self.send({"id": call_id, "method": method, "params": params or {}})

    async def receive(self) -> dict[str, Any]:
        with anyio.fail_after(STEP_S):
            frame = await self.frames.receive()
        assert not isinstance(frame, OversizeFrame)
        message: dict[str, Any] = json.loads(frame)
        return message

    async def initialize(
        self, *, max_frame_bytes: int = MAX_FRAME_BYTES, stream_window: int = STREAM_WINDOW
    ) -> dict[str, Any]:
        params = {
            "host_version": "test",
            "protocol_version": 1,
            "max_frame_bytes": max_frame_bytes,
            "stream_window": stream_window,
        }
        await self.request(0, "initialize", params)
        with anyio.fail_after(START_S):
            answer = await self.receive()
        assert "result" in answer, answer
        return answer

    async def exit_status(self) -> int:
        with anyio.fail_after(STEP_S):
            return await self.process.wait()


@asynccontextmanager
async def raw_shim(python: Path, package: str, data_dir: Path) -> AsyncIterator[RawShim]:
    """A shim serving `package`, not yet initialized; killed afterwards."""
    process = await start_process(python, package, data_dir)
    _, stdout, stderr_stream = stdio(process)
    stderr = Stderr()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(stderr.collect, stderr_stream)
            try:
                yield RawShim(process, stderr, FrameReader(stdout, 1 << 30))
            finally:
                kill_group(process)
    finally:
        with anyio.CancelScope(shield=True), anyio.fail_after(STEP_S):
            await process.aclose()
