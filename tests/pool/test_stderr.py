"""A child's stderr (and stray stdout) goes to its size-rotated log, never onto the wire."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from hiagent_host.packages import names
from hiagent_host.pool.stderr import TAIL_LINES, RotatingFile, StderrSink
from hiagent_host.redact import Secrets
from tests.pool.support import PACKAGES, Store, call, open_pool

SECRET = "sk-never-logged-4f2a9c"


def log_path(store: Store, fixture: str) -> Path:
    name = PACKAGES[fixture]
    version_dir = names.version_dir(store.versions[name])
    return store.root / "state" / "logs" / names.dir_name(name) / f"{version_dir}.log"


def test_a_log_file_rotates_by_size_and_keeps_its_backups(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "1.0.log"
    file = RotatingFile(path, max_bytes=100, backups=2)
    for i in range(10):
        file.write(f"line {i:02d} ".encode() * 5 + b"\n")  # 46 bytes: two fit in a file
    file.close()
    assert sorted(p.name for p in path.parent.iterdir()) == ["1.0.log", "1.0.log.1", "1.0.log.2"]
    assert path.read_bytes().count(b"\n") == 2
    assert b"line 09" in path.read_bytes()
    assert b"line 05" in (path.parent / "1.0.log.2").read_bytes()


def test_the_tail_keeps_the_last_lines_whole_across_chunks(tmp_path: Path) -> None:
    sink = StderrSink(RotatingFile(tmp_path / "x.log", max_bytes=0, backups=0), "pkg 1.0")
    text = "".join(f"line {i}\n" for i in range(TAIL_LINES + 10)) + "last without newline"
    data = text.encode()
    for start in range(0, len(data), 7):  # arbitrary chunk boundaries
        sink.feed(data[start : start + 7])
    sink.close()
    tail = sink.tail_text().splitlines()
    assert len(tail) == TAIL_LINES
    assert tail[-1] == "last without newline"
    assert tail[-2] == f"line {TAIL_LINES + 9}"
    assert (tmp_path / "x.log").read_text() == text


TRICKY = 'q"uo\\te-密钥-9'


def test_a_secret_split_across_chunks_is_masked_in_the_file_the_tail_and_the_debug_copy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = StderrSink(RotatingFile(tmp_path / "x.log", max_bytes=0, backups=0), "pkg 1.0")
    sink.secrets.add(Secrets([SECRET, TRICKY]))
    data = b"".join(
        [
            f"key={SECRET}\n".encode(),
            f"repr={TRICKY!r} json={json.dumps(TRICKY)}\n".encode(),
            b"invalid utf-8 \xff then " + SECRET.encode(),  # no newline: flushed on close
        ]
    )
    with caplog.at_level(logging.DEBUG, logger="hiagent_host.pool.stderr"):
        for start in range(0, len(data), 5):  # every secret crosses a chunk boundary
            sink.feed(data[start : start + 5])
        sink.close()
    written = (tmp_path / "x.log").read_bytes()
    assert b"\xff" in written  # bytes that are not UTF-8 are kept as they came
    for where in (written.decode("utf-8", "replace"), sink.tail_text(), caplog.text):
        assert SECRET not in where
        assert "uo" not in where
        assert where.count("***") == 4, where


@pytest.mark.anyio
async def test_what_a_plugin_prints_on_stdout_lands_in_its_log_and_the_call_still_answers(
    store: Store,
) -> None:
    config = store.config(log_max_bytes=1024, log_backups=1)
    async with open_pool(store, config) as pool:
        for i in range(30):
            assert await call(pool, store, "noisy", "chatter", text=f"mark-{i}") == {
                "text": f"mark-{i}"
            }
    path = log_path(store, "noisy")
    assert path.stat().st_size <= 1024
    assert (path.parent / f"{path.name}.1").is_file()
    assert not (path.parent / f"{path.name}.2").exists()
    assert "noisy subprocess: mark-29" in path.read_text()


@pytest.mark.anyio
async def test_config_values_appear_in_no_log(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hiagent_host")
    name = PACKAGES["secret"]
    version = store.versions[name]
    cfg = {"api_key": SECRET}
    async with open_pool(store) as pool:
        await pool.validate(name, version, "secret", cfg)
        result = await pool.run_tool(name, version, "secret", "has_key", {}, cfg)
        assert result == {"has_key": True, "region": "cn"}
    assert SECRET not in caplog.text
    assert SECRET not in log_path(store, "secret").read_text()
