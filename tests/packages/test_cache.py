"""The download cache stays under packages.max_cache_bytes, evicting unused wheels only."""

from __future__ import annotations

import os
import time
from pathlib import Path

from hiagent_host.packages import cache
from tests.packages.support import make_manager

LONG_AGO_S = 86400.0


def _age(entry: Path, seconds: float) -> None:
    """Make the cache entry look last used `seconds` ago (its files' mtime)."""
    past = time.time() - seconds
    for file in entry.iterdir():
        os.utime(file, (past, past))


def test_least_recently_used_idle_wheels_are_evicted_beyond_the_bound(
    tmp_path: Path, wheelhouse: Path, built_wheels: dict[str, Path]
) -> None:
    a, b, c = built_wheels["pkg_nodeps"], built_wheels["pkg_onedep"], built_wheels["calc"]
    bound = a.stat().st_size + c.stat().st_size + 1
    pm = make_manager(tmp_path, wheelhouse, max_cache_bytes=bound)
    pm.read_metadata(a.as_uri(), a.name)
    pm.read_metadata(b.as_uri(), b.name)
    entries = {e.path.name: e.path for e in cache.entries(pm.layout.cache_dir)}
    assert len(entries) == 2  # over the bound, but both were used just now: nothing goes
    for path in entries.values():
        _age(path, LONG_AGO_S)
    a_entry = next(p for p in entries.values() if (p / a.name).exists())
    _age(a_entry, LONG_AGO_S / 2)  # a was used more recently than b
    pm.read_metadata(c.as_uri(), c.name)
    left = sorted(f.name for e in cache.entries(pm.layout.cache_dir) for f in e.path.iterdir())
    assert left == sorted([a.name, c.name])  # b, the least recently used, went


def test_a_wheel_in_use_is_never_evicted(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    entry = root / ("0" * 64)
    entry.mkdir(parents=True)
    wheel = entry / "pkg-1.0-py3-none-any.whl"
    wheel.write_bytes(b"x" * 100)
    _age(entry, LONG_AGO_S)
    with cache.using(wheel):
        assert cache.trim(root, max_bytes=10, min_idle_s=1.0) == []
    assert cache.trim(root, max_bytes=10, min_idle_s=1.0) == [entry]
    assert cache.trim(root, max_bytes=0, min_idle_s=0.0) == []  # 0: no bound
