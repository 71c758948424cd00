"""The packages store: where installed wheels and their records live when it is not this disk.

`open_store(config)` is None for `[store] backend = "local"` (the records under `extensions/`
are the truth, on one machine or a shared file system) and an `S3Store` for `"s3"`. The store
deals in bytes and keys only; the package manager decides what they mean.
"""

from __future__ import annotations

from hiagent_host.config import Config
from hiagent_host.store.s3 import (
    S3Store,
    StorageUnavailable,
    StoredObject,
    identity_of,
    s3_client,
)

__all__ = [
    "S3Store",
    "StorageUnavailable",
    "StoredObject",
    "identity_of",
    "open_store",
    "s3_client",
]


def open_store(config: Config) -> S3Store | None:
    """The configured remote store, or None when the local directories are the truth."""
    if config.store.backend == "s3":
        return S3Store(config.store)
    return None
