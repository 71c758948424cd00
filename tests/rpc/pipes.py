"""In-memory byte pipes, and a scripted child that speaks the wire from inside a test."""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
from anyio.abc import ByteReceiveStream, ByteSendStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from hiagent_host.rpc.framing import FrameReader, OversizeFrame

# Chunks in flight in one pipe; a real pipe holds about this much too.
PIPE_CHUNKS = 64


class PipeWriter(ByteSendStream):
    """The writing end of an in-memory pipe."""

    def __init__(self, chunks: MemoryObjectSendStream[bytes]) -> None:
        self._chunks = chunks

    async def send(self, item: bytes) -> None:
        await self._chunks.send(bytes(item))

    async def send_eof(self) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._chunks.aclose()


class PipeReader(ByteReceiveStream):
    """The reading end of an in-memory pipe; EndOfStream once the writer is closed."""

    def __init__(self, chunks: MemoryObjectReceiveStream[bytes]) -> None:
        self._chunks = chunks
        self._left = b""

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self._left:
            self._left = await self._chunks.receive()
        data, self._left = self._left[:max_bytes], self._left[max_bytes:]
        return data

    async def aclose(self) -> None:
        await self._chunks.aclose()


def pipe() -> tuple[PipeWriter, PipeReader]:
    send, receive = anyio.create_memory_object_stream[bytes](PIPE_CHUNKS)
    return PipeWriter(send), PipeReader(receive)


class ScriptedChild:
    """The child's end of a peer's wire, driven step by step by a test."""

    def __init__(self) -> None:
        self.host_out, self._stdin = pipe()  # host writes, the child reads
        self._stdout, self.host_in = pipe()  # the child writes, host reads
        self._frames = FrameReader(self._stdin, 1 << 30)

    async def receive(self) -> dict[str, Any]:
        """The next message the host sent."""
        frame = await self._frames.receive()
        assert not isinstance(frame, OversizeFrame)
        message: dict[str, Any] = msgspec.json.decode(frame)
        return message

    async def send_raw(self, data: bytes) -> None:
        await self._stdout.send(data)

    async def send(self, message: dict[str, Any]) -> None:
        await self._stdout.send(msgspec.json.encode({"jsonrpc": "2.0", **message}) + b"\n")

    async def answer(self, call_id: int, result: Any) -> None:
        await self.send({"id": call_id, "result": result})

    async def fail(self, call_id: int, code: int, message: str, data: Any = None) -> None:
        await self.send({"id": call_id, "error": {"code": code, "message": message, "data": data}})

    async def item(self, call_id: int, seq: int, item: Any) -> None:
        await self.send({"method": "$/stream", "params": {"id": call_id, "seq": seq, "item": item}})

    async def close(self) -> None:
        """EOF on the host's side of the child's stdout."""
        await self._stdout.aclose()

    async def aclose(self) -> None:
        """Close every end (the peer closes its own two as well)."""
        for end in (self._stdin, self._stdout, self.host_out, self.host_in):
            await end.aclose()
