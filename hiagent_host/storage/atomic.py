"""Atomic writes: a temp file in the target's directory, fsync, then os.replace."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import msgspec

_json_encoder = msgspec.json.Encoder(order="deterministic")


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace `path` with `data` so readers see the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).chmod(mode)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write `obj` as pretty, key-sorted JSON."""
    atomic_write_bytes(path, msgspec.json.format(_json_encoder.encode(obj), indent=2) + b"\n")


def read_json(path: Path) -> Any:
    """Read a JSON document written by `atomic_write_json`."""
    return msgspec.json.decode(path.read_bytes())


def fsync_dir(directory: Path) -> None:
    """Make a rename inside `directory` durable."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
