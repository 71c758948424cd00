"""Framing: lines split anywhere, over-size lines discarded in bounded memory, ids sniffed,
frames queued while a write runs leave together."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import anyio
import pytest
from anyio.abc import ByteReceiveStream, ByteSendStream

from hiagent_host.errors import FRAME_TOO_LARGE
from hiagent_host.rpc.errors import FrameTooLarge
from hiagent_host.rpc.framing import (
    READ_CHUNK_BYTES,
    FrameReader,
    FrameWriter,
    OversizeFrame,
    sniff_call_id,
)
from hiagent_host.rpc.messages import Notification, Request


class Chunks(ByteReceiveStream):
    """A byte stream that hands out the given chunks one by one, made on demand."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    async def receive(self, max_bytes: int = 65536) -> bytes:
        for chunk in self._chunks:
            assert len(chunk) <= max_bytes
            return chunk
        raise anyio.EndOfStream

    async def aclose(self) -> None:
        return None


def reader(*chunks: bytes, limit: int = 1024) -> FrameReader:
    return FrameReader(Chunks(iter(chunks)), limit)


async def frames(r: FrameReader) -> list[bytes | OversizeFrame]:
    out: list[bytes | OversizeFrame] = []
    while True:
        try:
            out.append(await r.receive())
        except anyio.EndOfStream:
            return out


@pytest.mark.anyio
async def test_frames_split_across_reads_are_joined() -> None:
    r = reader(b'{"a":', b'1}\n{"b"', b":2}\n", b"\n")
    assert await frames(r) == [b'{"a":1}', b'{"b":2}', b""]


@pytest.mark.anyio
async def test_several_frames_in_one_read_come_out_one_by_one() -> None:
    assert await frames(reader(b"1\n2\n3\n")) == [b"1", b"2", b"3"]


@pytest.mark.anyio
async def test_receive_many_takes_every_whole_frame_of_a_read_oversize_ones_reported() -> None:
    big = b'{"jsonrpc":"2.0","id":9,"result":"' + b"x" * 2000 + b'"}'
    r = reader(b"1\n2\n" + big + b"\n3\n4", b"5\n", limit=1024)
    assert await r.receive_many() == [b"1", b"2", OversizeFrame(id=9, size=len(big)), b"3"]
    assert await r.receive_many() == [b"45"]
    with pytest.raises(anyio.EndOfStream):
        await r.receive_many()


@pytest.mark.anyio
async def test_a_last_frame_without_newline_is_still_a_frame() -> None:
    assert await frames(reader(b"1\n", b"2")) == [b"1", b"2"]


@pytest.mark.anyio
async def test_a_frame_of_exactly_the_limit_is_accepted() -> None:
    assert await frames(reader(b"x" * 1024 + b"\n", limit=1024)) == [b"x" * 1024]


@pytest.mark.anyio
async def test_an_oversize_frame_is_reported_with_its_call_id_and_reading_goes_on() -> None:
    big = b'{"jsonrpc":"2.0","id":7,"result":"' + b"x" * 5000 + b'"}'
    r = reader(big[:100], big[100:3000], big[3000:] + b"\nnext\n", limit=1024)
    assert await frames(r) == [OversizeFrame(id=7, size=len(big), stream_item=False), b"next"]


@pytest.mark.anyio
async def test_an_oversize_frame_ending_in_the_same_read_is_discarded_too() -> None:
    r = reader(b"y" * 2000 + b"\nok\n", limit=1024)
    assert await frames(r) == [OversizeFrame(id=None, size=2000), b"ok"]


@pytest.mark.anyio
async def test_an_oversize_frame_cut_by_eof_is_reported() -> None:
    assert await frames(reader(b"z" * 3000, limit=1024)) == [OversizeFrame(id=None, size=3000)]


@pytest.mark.anyio
async def test_discarding_a_huge_frame_holds_only_the_limit_and_a_read_in_memory() -> None:
    total = 64 * 1024 * 1024
    head = b'{"jsonrpc":"2.0","method":"$/stream","params":{"id":12,"seq":0,"item":"'

    def chunks() -> Iterator[bytes]:
        yield head
        for _ in range(total // READ_CHUNK_BYTES):
            yield b"x" * READ_CHUNK_BYTES
        yield b'"}}\nafter\n'

    r = FrameReader(Chunks(chunks()), 256 * 1024)
    tracemalloc.start()
    try:
        first = await r.receive()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(first, OversizeFrame)
    assert (first.id, first.stream_item) == (12, True)
    assert first.size == len(head) + total + 3
    assert peak < 2 * 1024 * 1024
    assert await r.receive() == b"after"


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        (b'{"jsonrpc":"2.0","id":42,"result":1}', (42, False)),
        (b'{"jsonrpc":"2.0","id":42}', (42, False)),
        (b'{"jsonrpc":"2.0","method":"$/stream","params":{"id":9,"seq":3,', (9, True)),
        (b'{"jsonrpc":"2.0","method":"$/other","params":{"id":9,', (None, False)),
        (b'{"jsonrpc":"2.0","id":null,"error":', (None, False)),
        (b'{"id":42,"jsonrpc":"2.0"', (None, False)),
        (b"not json at all", (None, False)),
    ],
)
def test_the_call_id_is_read_only_from_the_documented_prefixes(
    prefix: bytes, expected: tuple[int | None, bool]
) -> None:
    assert sniff_call_id(prefix) == expected


class Recorder(ByteSendStream):
    """A byte stream that records each write; `gate`, while set, holds writes back."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.gate: anyio.Event | None = None

    async def send(self, item: bytes) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.writes.append(bytes(item))

    async def send_eof(self) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        pass


async def written(*messages: object, limit: int = 1024) -> bytes:
    """What a writer writes for `messages`."""
    stream = Recorder()
    writer = FrameWriter(stream, limit)
    for message in messages:
        writer.queue(message)
    assert await writer.flush(stall_s=5.0)
    return b"".join(stream.writes)


@pytest.mark.anyio
async def test_requests_are_encoded_with_the_id_first_so_the_child_can_sniff_it() -> None:
    frame = await written(Request(id=5, method="ping"))
    assert frame == b'{"jsonrpc":"2.0","id":5,"method":"ping","params":{}}\n'


@pytest.mark.anyio
async def test_notifications_are_one_line_even_with_newlines_in_strings() -> None:
    frame = await written(Notification(method="m", params={"t": "a\nb"}))
    assert frame.count(b"\n") == 1
    assert frame.endswith(b"\n")


@pytest.mark.anyio
async def test_an_oversize_request_is_refused_before_anything_is_written() -> None:
    stream = Recorder()
    writer = FrameWriter(stream, 1024)
    writer.queue(Request(id=1, method="ping"))
    with pytest.raises(FrameTooLarge) as caught:
        writer.queue(Request(id=2, method="run_tool", params={"x": "y" * 2000}))
    assert caught.value.code == FRAME_TOO_LARGE
    assert caught.value.data["limit"] == 1024
    assert await writer.flush(stall_s=5.0)
    assert stream.writes == [b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{}}\n']


@pytest.mark.anyio
async def test_frames_queued_while_a_write_runs_leave_together_in_order_in_the_next() -> None:
    stream = Recorder()
    writer = FrameWriter(stream, 1024)
    stream.gate = anyio.Event()
    async with anyio.create_task_group() as tg:
        writer.queue(Request(id=1, method="a"))
        tg.start_soon(writer.flush, 5.0)  # the writer: blocked in its first write
        await anyio.wait_all_tasks_blocked()
        for call_id in (2, 3):
            writer.queue(Request(id=call_id, method="b"))
            assert await writer.flush(stall_s=5.0)  # returns at once: the writer takes it
        assert stream.writes == []
        stream.gate.set()
    assert [w.count(b"\n") for w in stream.writes] == [1, 2]
    assert [line[22:23] for w in stream.writes for line in w.splitlines()] == [b"1", b"2", b"3"]


@pytest.mark.anyio
async def test_a_write_that_stalls_is_reported_and_its_frames_dropped() -> None:
    stream = Recorder()
    writer = FrameWriter(stream, 1024)
    stream.gate = anyio.Event()  # never set: the reader of the stream is stuck
    writer.queue(Request(id=1, method="a"))
    assert await writer.flush(stall_s=0.05) is False
    stream.gate = None
    assert await writer.flush(stall_s=5.0)
    assert stream.writes == []
