"""A reinstalled or deleted package's children give way, so the next call runs the new code."""

from __future__ import annotations

import functools
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from hiagent_host.errors import PACKAGE_NOT_FOUND, PLUGIN_CRASHED, PLUGIN_UNAVAILABLE, HostError
from hiagent_host.packages import PackageManager
from hiagent_host.packages.wheelbuild import build_wheel
from hiagent_host.pool import Pool
from hiagent_host.pool.procfs import is_running
from tests.pool.support import (
    PACKAGES,
    Store,
    call,
    calls_running,
    open_pool,
    plugin_pid,
    wait_for_async,
)
from tests.support.plugins import FIXTURES

pytestmark = pytest.mark.anyio

MIS = PACKAGES["pool_misbehave"]


@pytest.fixture(scope="module")
def build_two(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pool_misbehave rebuilt, same name and version, with BUILD = "two"."""
    project = tmp_path_factory.mktemp("build-two") / "pool_misbehave"
    shutil.copytree(FIXTURES / "pool_misbehave", project)
    module = project / "pool_misbehave" / "__init__.py"
    module.write_text(module.read_text().replace('BUILD = "one"', 'BUILD = "two"'))
    return build_wheel(project, project.parent / "wheels")


@pytest.fixture
def restore(store: Store, built_wheels: dict[str, Path]) -> Iterator[None]:
    """Reinstall the session's own builds of what a test replaced or deleted."""
    yield
    manager = store.manager()
    for fixture in ("pool_misbehave", "exit_mid_call"):
        wheel = built_wheels[fixture]
        record = manager.install(wheel.as_uri(), wheel.name, force=True)
        assert record.version == store.versions[PACKAGES[fixture]]


async def install(packages: PackageManager, wheel: Path) -> None:
    """Install `wheel` (replacing) in a worker thread, as the API does."""
    work = functools.partial(packages.install, wheel.as_uri(), wheel.name, force=True)
    await anyio.to_thread.run_sync(work)


async def outcome(pool: Pool, store: Store, fixture: str, tool: str, **kw: Any) -> Any:
    try:
        return await call(pool, store, fixture, tool, **kw)
    except HostError as exc:
        return exc


async def test_a_reinstall_lets_calls_in_flight_finish_on_the_old_build_then_replaces_it(
    store: Store, build_two: Path, restore: None
) -> None:
    async with open_pool(store) as pool:
        assert await call(pool, store, "pool_misbehave", "build") == "one"
        [old] = pool.snapshot()
        results: list[Any] = []

        async def sleeper() -> None:
            results.append(await outcome(pool, store, "pool_misbehave", "sleep_async", seconds=1))

        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper)
            await wait_for_async(lambda: calls_running(pool, 1), "the call in flight")
            await install(pool.packages, build_two)  # returns once the old child is gone
            assert not is_running(old.pid or 0)
        assert results == ["slept"]
        assert await call(pool, store, "pool_misbehave", "build") == "two"
        [new] = pool.snapshot()
        assert new.pid != old.pid
        assert new.restarts == 0


async def test_a_reinstall_by_another_process_is_noticed_on_the_next_call(
    store: Store, build_two: Path, restore: None
) -> None:
    async with open_pool(store) as pool:
        assert await call(pool, store, "pool_misbehave", "build") == "one"
        [old] = pool.snapshot()
        await install(store.manager(), build_two)  # no listener of this pool hears it
        assert await call(pool, store, "pool_misbehave", "build") == "two"
        await wait_for_async(lambda: not is_running(old.pid or 0), "the old child to stop")
        assert [p.pid for p in pool.snapshot()] != [old.pid]


async def test_deleting_a_package_stops_its_children(store: Store, restore: None) -> None:
    async with open_pool(store) as pool:
        pid = await plugin_pid(pool, store)
        deleted = await anyio.to_thread.run_sync(pool.packages.delete, MIS, store.versions[MIS])
        assert deleted
        assert not is_running(pid)
        assert pool.snapshot() == []
        with pytest.raises(HostError) as caught:
            await call(pool, store, "pool_misbehave", "pid")
        assert caught.value.code == PACKAGE_NOT_FOUND


async def test_a_reinstall_lifts_a_crash_loop_block(
    store: Store, built_wheels: dict[str, Path], restore: None
) -> None:
    config = store.config(restart_limit=1, restart_cooldown_s=3600)
    async with open_pool(store, config) as pool:
        for _ in range(2):
            error = await outcome(pool, store, "exit_mid_call", "exit_now", code=4)
            assert error.code == PLUGIN_CRASHED
        error = await outcome(pool, store, "exit_mid_call", "slow", seconds=0)
        assert error.code == PLUGIN_UNAVAILABLE
        await install(pool.packages, built_wheels["exit_mid_call"])
        assert await call(pool, store, "exit_mid_call", "slow", seconds=0) == "done"
