"""A child's stderr: a size-rotated log file, a tail of recent lines, a debug copy to the host log.

The file is `state/logs/<dir>/<version>.log`; when a write would take it past `max_bytes` it
becomes `.log.1` (older ones shift up to `.log.<backups>`, the oldest is dropped). Every line
is kept whole in the file, cut to `MAX_TAIL_LINE_CHARS` in the tail. The pool never writes
call inputs or config values here: only what the plugin itself prints.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from pathlib import Path
from typing import Final

# Lines of stderr kept for `PluginCrashed`/`PluginStartFailed` data (a traceback fits).
TAIL_LINES: Final = 40
# A single tail line longer than this is cut: error data stays small.
MAX_TAIL_LINE_CHARS: Final = 2000
# A partial line (no newline yet) longer than this is flushed as a line of its own.
MAX_PENDING_BYTES: Final = 64 * 1024

log = logging.getLogger("hiagent_host.pool.stderr")


class RotatingFile:
    """An append-only file that rotates by size (best effort across processes)."""

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._fd: int | None = None
        self._size = 0

    def write(self, data: bytes) -> None:
        """Append `data`, rotating first if it would not fit."""
        try:
            fd = self._fd if self._fd is not None else self._open()
            if self.max_bytes > 0 and self._size > 0 and self._size + len(data) > self.max_bytes:
                fd = self._rotate()
            os.write(fd, data)
            self._size += len(data)
        except OSError as exc:  # a full disk must not take the child's calls down
            log.warning("cannot write plugin log %s: %s", self.path, exc)
            self.close()

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self._fd, self._size = fd, os.fstat(fd).st_size
        return fd

    def _rotate(self) -> int:
        self.close()
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                with contextlib.suppress(FileNotFoundError):
                    self._backup(i).replace(self._backup(i + 1))
            with contextlib.suppress(FileNotFoundError):
                self.path.replace(self._backup(1))
        else:
            with contextlib.suppress(FileNotFoundError):
                self.path.write_bytes(b"")
        return self._open()

    def _backup(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}")


class StderrSink:
    """Where one child's stderr goes: the rotated file, the tail, the host log at debug."""

    def __init__(self, file: RotatingFile, tag: str) -> None:
        self.file = file
        self.tag = tag
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._pending = b""

    def feed(self, chunk: bytes) -> None:
        """Take a chunk of stderr as it arrives."""
        self.file.write(chunk)
        data = self._pending + chunk
        *lines, self._pending = data.split(b"\n")
        if len(self._pending) > MAX_PENDING_BYTES:
            lines.append(self._pending)
            self._pending = b""
        for line in lines:
            self._line(line)

    def close(self) -> None:
        """The stream ended: keep a last partial line, close the file."""
        if self._pending:
            self._line(self._pending)
            self._pending = b""
        self.file.close()

    def tail_text(self) -> str:
        return "\n".join(self.tail)

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        self.tail.append(text[:MAX_TAIL_LINE_CHARS])
        if log.isEnabledFor(logging.DEBUG):
            log.debug("[%s] %s", self.tag, text)
