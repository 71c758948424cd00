"""The shim's wire, in-process: lines cut in bounded memory, read and written on a real pipe."""

from __future__ import annotations

import asyncio
import os
import threading
import tracemalloc
from collections.abc import Iterator

import pytest

from hiagent_shim.wire import Line, LineSplitter, OversizeLine, WireReader, WireWriter, sniff_id

CHUNK = 64 * 1024
# Anything the loop should do at once is bounded by this (a failure is a hang).
STEP_S = 10.0


def test_lines_come_out_whole_across_chunks_and_the_last_one_needs_no_newline() -> None:
    splitter = LineSplitter(1024)
    assert splitter.feed(b"one\ntw") == [b"one"]
    assert splitter.feed(b"o") == []
    assert splitter.feed(b"\n\nthree\nfo") == [b"two", b"", b"three"]
    assert splitter.feed(b"ur") == []
    assert splitter.end() == [b"four"]
    assert splitter.end() == []


def test_an_oversize_line_in_one_chunk_is_reported_with_its_id_and_the_next_is_kept() -> None:
    splitter = LineSplitter(1024)
    big = b'{"jsonrpc":"2.0","id":7,"x":"' + b"x" * 2000 + b'"}'
    assert splitter.feed(big + b"\nok\n") == [OversizeLine(id=7, size=len(big)), b"ok"]


def test_an_oversize_line_is_discarded_in_bounded_memory_with_its_id() -> None:
    head = b'{"jsonrpc":"2.0","id":31,"method":"run_tool","params":{"x":"'
    splitter = LineSplitter(128 * 1024)
    lines: list[Line] = []
    tracemalloc.start()
    try:
        lines += splitter.feed(head)
        for _ in range(512):
            lines += splitter.feed(b"x" * CHUNK)
        lines += splitter.feed(b'"}}\n{"ok":1}\n')
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == [OversizeLine(id=31, size=len(head) + 512 * CHUNK + 3), b'{"ok":1}']
    assert peak < 2 * 1024 * 1024


def test_an_oversize_line_cut_off_by_the_end_is_still_reported() -> None:
    splitter = LineSplitter(1024)
    assert splitter.feed(b'{"jsonrpc":"2.0","id":3,' + b"x" * 5000) == []
    assert splitter.end() == [OversizeLine(id=3, size=5024)]


def test_the_request_id_is_read_only_from_a_json_rpc_prefix() -> None:
    assert sniff_id(b'{"jsonrpc": "2.0", "id": 12, "method"') == 12
    assert sniff_id(b'{"jsonrpc":"2.0","method":"x","params":{"id":12') is None
    assert sniff_id(b"garbage") is None


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


def test_the_reader_hands_lines_to_the_loop_and_reports_the_end_and_the_hangup(
    loop: asyncio.AbstractEventLoop,
) -> None:
    read_fd, write_fd = os.pipe()
    lines: list[Line] = []
    ended = loop.create_future()
    hung_up = threading.Event()
    reader = WireReader(
        read_fd,
        loop,
        on_line=lines.append,
        on_end=ended.set_result,
        on_hangup=hung_up.set,
    )
    try:
        reader.start()
        os.write(write_fd, b"one\ntwo\nthr")
        os.write(write_fd, b"ee")
        os.close(write_fd)
        assert loop.run_until_complete(asyncio.wait_for(ended, STEP_S)) == "stdin closed"
        assert hung_up.wait(STEP_S)
    finally:
        os.close(read_fd)
    assert lines == [b"one", b"two", b"three"]


def test_frames_leave_whole_and_in_order_even_on_a_full_pipe(
    loop: asyncio.AbstractEventLoop,
) -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)  # the writer must wait for the loop, not fail
    frames = [bytes([ord("a") + n]) * (40 * 1024) for n in range(8)]  # 320 KiB: over a pipe
    received = bytearray()

    def drain_pipe() -> None:
        while chunk := os.read(read_fd, CHUNK):
            received.extend(chunk)

    errors: list[OSError] = []
    writer = WireWriter(write_fd, loop, on_error=errors.append)
    reader = threading.Thread(target=drain_pipe)
    reader.start()
    try:
        for frame in frames:
            writer.write(frame)
        loop.run_until_complete(asyncio.sleep(0))
        writer.drain()
    finally:
        os.close(write_fd)
        reader.join(STEP_S)
        os.close(read_fd)
    assert errors == []
    assert bytes(received) == b"".join(frame + b"\n" for frame in frames)


def test_a_write_to_a_closed_wire_is_reported_once(loop: asyncio.AbstractEventLoop) -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    errors: list[OSError] = []
    writer = WireWriter(write_fd, loop, on_error=errors.append)
    try:
        writer.write(b"one")
        loop.run_until_complete(asyncio.sleep(0))
        writer.write(b"two")
        writer.drain()
    finally:
        os.close(write_fd)
    assert [type(e) for e in errors] == [BrokenPipeError]
