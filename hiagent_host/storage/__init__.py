"""Safe, atomic file-system primitives shared by every layer that writes to disk."""

from hiagent_host.storage.atomic import atomic_write_bytes, atomic_write_json, read_json
from hiagent_host.storage.locks import FileLock
from hiagent_host.storage.paths import PathEscapeError, safe_join

__all__ = [
    "FileLock",
    "PathEscapeError",
    "atomic_write_bytes",
    "atomic_write_json",
    "read_json",
    "safe_join",
]
