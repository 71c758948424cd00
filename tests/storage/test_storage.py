"""Atomic writes, path containment and cross-process locks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hiagent_host.storage import (
    FileLock,
    PathEscapeError,
    atomic_write_bytes,
    atomic_write_json,
    read_json,
    safe_join,
)


def test_atomic_write_replaces_the_file_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "d" / "f.json"
    atomic_write_json(target, {"b": 1, "a": [1, 2]})
    atomic_write_json(target, {"c": "é"})
    assert read_json(target) == {"c": "é"}
    assert [p.name for p in target.parent.iterdir()] == ["f.json"]


def test_a_failed_atomic_write_keeps_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


@pytest.mark.parametrize("part", ["..", ".", "", "a/b", "/etc", "a\x00b", "..\\x"])
def test_safe_join_refuses_components_that_could_escape(tmp_path: Path, part: str) -> None:
    with pytest.raises(PathEscapeError):
        safe_join(tmp_path, part)


def test_safe_join_refuses_a_symlink_leading_outside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(PathEscapeError):
        safe_join(root, "link", "x")
    assert safe_join(root, "ok", "x") == root / "ok" / "x"


def test_a_file_lock_excludes_another_process_until_released(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "p.lock"
    probe = (
        "import sys; from pathlib import Path; from hiagent_host.storage import FileLock; "
        "sys.exit(0 if FileLock(Path(sys.argv[1])).acquire(timeout_s=0) else 7)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with FileLock(path) as lock:
        assert lock.held
        held = subprocess.run([sys.executable, "-c", probe, str(path)], env=env, timeout=60)
        assert held.returncode == 7
    free = subprocess.run([sys.executable, "-c", probe, str(path)], env=env, timeout=60)
    assert free.returncode == 0
