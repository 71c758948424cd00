"""The download cache's upkeep: drop rejected wheels, stay under `packages.max_cache_bytes`.

The cache is `state/cache/<sha256>/<filename>` (written by `fetch`). A wheel that fails
validation is removed at once (the next fetch of those bytes fails the same way). After every
fetch the cache is trimmed: while it is larger than `max_cache_bytes`, the least recently
used entry that is not in use in this process and was not used for `min_idle_s` (an install
elsewhere cannot still be reading it) is removed. `0` keeps everything.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hiagent_host.packages.fetch import PARTIAL_PREFIX

log = logging.getLogger(__name__)

_in_use: Counter[Path] = Counter()  # entry directory → installs of this process using it
_lock = threading.Lock()


@dataclass(frozen=True)
class Entry:
    path: Path
    size: int
    last_used: float  # the newest mtime of its files (each fetch rewrites the file)


@contextlib.contextmanager
def using(wheel: Path) -> Iterator[None]:
    """Mark the cache entry of `wheel` as in use (never evicted) for the block."""
    entry = wheel.parent
    with _lock:
        _in_use[entry] += 1
    try:
        yield
    finally:
        with _lock:
            _in_use[entry] -= 1
            if _in_use[entry] <= 0:
                del _in_use[entry]


def forget(wheel: Path) -> None:
    """Remove a rejected wheel (and its entry, once empty) from the cache."""
    with contextlib.suppress(FileNotFoundError):
        wheel.unlink()
    with contextlib.suppress(OSError):  # not empty: the same bytes under another name
        wheel.parent.rmdir()


def entries(cache_dir: Path) -> list[Entry]:
    """Every complete entry, least recently used first."""
    found: list[Entry] = []
    try:
        dirs = [d for d in cache_dir.iterdir() if not d.name.startswith(PARTIAL_PREFIX)]
    except FileNotFoundError:
        return found
    for entry in dirs:
        size, last = 0, 0.0
        try:
            for file in entry.iterdir():
                st = file.stat()
                size, last = size + st.st_size, max(last, st.st_mtime)
        except (FileNotFoundError, NotADirectoryError):
            continue
        found.append(Entry(entry, size, last))
    return sorted(found, key=lambda e: e.last_used)


def trim(cache_dir: Path, *, max_bytes: int, min_idle_s: float) -> list[Path]:
    """Evict unused entries, oldest first, until the cache fits `max_bytes`; what went."""
    if max_bytes <= 0:
        return []
    cached = entries(cache_dir)
    total = sum(e.size for e in cached)
    evicted: list[Path] = []
    now = time.time()
    for entry in cached:
        if total <= max_bytes:
            break
        with _lock:
            busy = _in_use[entry.path] > 0
        if busy or now - entry.last_used < min_idle_s:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        total -= entry.size
        evicted.append(entry.path)
    if evicted:
        log.info("download cache over %d bytes: evicted %d entries", max_bytes, len(evicted))
    return evicted
