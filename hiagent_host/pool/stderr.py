"""A child's stderr: a size-rotated log file, a tail of recent lines, a debug copy to the host log.

The file is `state/logs/<dir>/<version>.log`; when a write would take it past `max_bytes` it
becomes `.log.1` (older ones shift up to `.log.<backups>`, the oldest is dropped). Every line
is kept whole in the file, cut to `MAX_TAIL_LINE_CHARS` in the tail. The pool never writes
call inputs or config values here: only what the plugin (and the shim, reporting a failed
call) prints, and every line of it is masked first with the secrets of the calls the child
served recently (a `SecretWindow`): the file, the tail (error data) and the debug copy alike.
A line is written once it is complete (or over `MAX_PENDING_BYTES`), so a secret is never
split across two writes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from pathlib import Path
from typing import Final

from hiagent_host.redact import SecretWindow

# Lines of stderr kept for `PluginCrashed`/`PluginStartFailed` data (a traceback fits).
TAIL_LINES: Final = 40
# A single tail line longer than this is cut: error data stays small.
MAX_TAIL_LINE_CHARS: Final = 2000
# A partial line (no newline yet) longer than this is flushed as a line of its own.
MAX_PENDING_BYTES: Final = 64 * 1024
# Secret values of this many recent calls' configs are masked in a child's stderr (a failed
# call's report may be read after its answer). Bounded: the cost of a line stays constant.
RECENT_SECRET_VALUES: Final = 64

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
        self.secrets = SecretWindow(RECENT_SECRET_VALUES)
        self._pending = b""

    def feed(self, chunk: bytes) -> None:
        """Take a chunk of stderr as it arrives; complete lines are masked and written."""
        data = self._pending + chunk
        *lines, self._pending = data.split(b"\n")
        out = [self._mask(line) + b"\n" for line in lines]
        if len(self._pending) > MAX_PENDING_BYTES:
            out.append(self._mask(self._pending))
            self._pending = b""
        if out:
            self.file.write(b"".join(out))
        for line in out:
            self._line(line.removesuffix(b"\n"))

    def close(self) -> None:
        """The stream ended: keep a last partial line, close the file."""
        if self._pending:
            last = self._mask(self._pending)
            self.file.write(last)
            self._line(last)
            self._pending = b""
        self.file.close()

    def tail_text(self) -> str:
        return "\n".join(self.tail)

    def _mask(self, raw: bytes) -> bytes:
        if not len(self.secrets):
            return raw
        text = raw.decode("utf-8", "surrogateescape")
        masked = self.secrets.redact(text)
        return raw if masked == text else masked.encode("utf-8", "surrogateescape")

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        self.tail.append(text[:MAX_TAIL_LINE_CHARS])
        if log.isEnabledFor(logging.DEBUG):
            log.debug("[%s] %s", self.tag, text)
