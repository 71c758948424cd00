"""Advisory file locks that hold across processes (server and queue workers share data)."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

# How often a bounded lock wait re-tries a held lock.
LOCK_POLL_S = 0.05


class FileLock:
    """A `flock` on a lock file (exclusive, or `shared` with other shared holders);
    released on close or when the process dies."""

    def __init__(self, path: Path, *, shared: bool = False) -> None:
        self.path = path
        self._mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        self._fd: int | None = None

    def acquire(self, timeout_s: float | None = None) -> bool:
        """Take the lock, waiting at most `timeout_s` (None: wait as long as it takes)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, self._mode | (0 if deadline is None else fcntl.LOCK_NB))
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(LOCK_POLL_S)
                continue
            self._fd = fd
            return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
