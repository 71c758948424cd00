"""One store for the pool tests: the fixture packages installed once, by the real manager."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.pool.support import PACKAGES, Store

# Installs of different packages take different locks: a few at a time is fine.
INSTALL_THREADS = 3


@pytest.fixture(scope="session")
def store(
    tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, built_wheels: dict[str, Path]
) -> Store:
    """Every package of `PACKAGES` installed into a fresh store."""
    root = tmp_path_factory.mktemp("pool-store")
    store = Store(root=root, wheelhouse=wheelhouse, versions={})
    manager = store.manager()

    def install(fixture: str) -> tuple[str, str]:
        wheel = built_wheels[fixture]
        record = manager.install(wheel.as_uri(), wheel.name, force=False)
        return record.name, record.version

    with ThreadPoolExecutor(INSTALL_THREADS) as executor:
        store.versions.update(executor.map(install, PACKAGES))
    return store
