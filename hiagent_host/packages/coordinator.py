"""What the package manager needs from the other nodes of a deployment, as an interface.

A cluster-wide lock per package (installs and deletes of one package are serialised across
every node), and a way to tell the other nodes that a package version changed. Without Redis
there is nobody to tell and the per-package file lock is the only lock (`LocalCoordinator`);
`hiagent_host.cluster` implements it on Redis.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Protocol


class Coordinator(Protocol):
    def lock(self, dir_name: str, cancel: threading.Event | None) -> AbstractContextManager[None]:
        """Hold the package's cluster-wide lock (bounded, cancellable wait)."""
        ...

    def announce(self, dir_name: str, version_dir: str) -> None:
        """Tell every other node that the version was installed, replaced or deleted."""
        ...


class LocalCoordinator:
    """One node (or nodes that only share a file system): nothing beyond the file locks."""

    @contextlib.contextmanager
    def lock(self, dir_name: str, cancel: threading.Event | None) -> Iterator[None]:
        yield

    def announce(self, dir_name: str, version_dir: str) -> None:
        pass
