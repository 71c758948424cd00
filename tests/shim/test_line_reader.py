"""The shim's line reader (in-process, on a real pipe): bounded memory, ids sniffed."""

from __future__ import annotations

import os
import threading
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager

from hiagent_shim.wire import LineReader, OversizeLine, sniff_id

CHUNK = 64 * 1024


@contextmanager
def pipe_fed_with(*parts: bytes, repeat_middle: int = 1) -> Iterator[int]:
    """A pipe's read fd; a thread writes `parts` (the middle one `repeat_middle` times)."""
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with os.fdopen(write_fd, "wb") as out:
            out.write(parts[0])
            for _ in range(repeat_middle):
                for part in parts[1:-1]:
                    out.write(part)
            out.write(parts[-1])

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        yield read_fd
    finally:
        writer.join(timeout=10)
        os.close(read_fd)


def test_lines_come_out_whole_and_the_last_one_needs_no_newline() -> None:
    with pipe_fed_with(b"one\ntw", b"o\n", b"three") as fd:
        reader = LineReader(fd, 1024)
        assert [reader.read() for _ in range(4)] == [b"one", b"two", b"three", None]


def test_an_oversize_line_is_discarded_in_bounded_memory_with_its_id() -> None:
    head = b'{"jsonrpc":"2.0","id":31,"method":"run_tool","params":{"x":"'
    with pipe_fed_with(head, b"x" * CHUNK, b'"}}\n{"ok":1}\n', repeat_middle=512) as fd:
        reader = LineReader(fd, 128 * 1024)
        tracemalloc.start()
        try:
            first = reader.read()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert first == OversizeLine(id=31, size=len(head) + 512 * CHUNK + 3)
        assert peak < 2 * 1024 * 1024
        assert reader.read() == b'{"ok":1}'


def test_the_request_id_is_read_only_from_a_json_rpc_prefix() -> None:
    assert sniff_id(b'{"jsonrpc": "2.0", "id": 12, "method"') == 12
    assert sniff_id(b'{"jsonrpc":"2.0","method":"x","params":{"id":12') is None
    assert sniff_id(b"garbage") is None
