"""prewarm_on_install: a package's process starts right after its install, so the first call
is warm; for installs in this process at once, for those of another process on the next scan."""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from pathlib import Path

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest

from hiagent_host.packages import PackageEvent
from hiagent_host.pool import Pool
from tests.packages.support import subprocess_env, write_runtime_toml
from tests.pool.support import Store, wait_for_async

pytestmark = pytest.mark.anyio

CLI_TIMEOUT_S = 120


@pytest.fixture
def fresh(tmp_path: Path, wheelhouse: Path) -> Store:
    """An empty store of its own (the session store has everything installed already)."""
    return Store(root=tmp_path / "store", wheelhouse=wheelhouse, versions={})


def _ready(pool: Pool) -> bool:
    return [p.state for p in pool.snapshot()] == ["ready"]


async def test_an_install_in_this_process_starts_the_process_its_first_call_then_uses(
    fresh: Store, built_wheels: dict[str, Path]
) -> None:
    config = fresh.config(prewarm_on_install=True)
    manager = fresh.manager(config)
    wheel = built_wheels["echo"]
    async with Pool(config, manager) as pool:
        install = partial(manager.install, wheel.as_uri(), wheel.name, force=False)
        record = await anyio.to_thread.run_sync(install)
        [process] = pool.snapshot()  # started, and answering, before the install returned
        assert (process.package, process.version, process.state) == (
            record.name, record.version, "ready",
        )  # fmt: skip

        answer = await pool.run_tool(record.name, record.version, "echo", "echo", {"a": 1}, None)
        assert answer == {"a": 1}
        assert pool.stats().starts == 1  # the call found the process warm
        [process] = pool.snapshot()
        assert process.calls_total == 1

        # A reinstall replaces the process with one of the new build, started at once too.
        old_pid = process.pid
        force = partial(manager.install, wheel.as_uri(), wheel.name, force=True)
        await anyio.to_thread.run_sync(force)
        [process] = pool.snapshot()
        assert (process.state, pool.stats().starts) == ("ready", 2)
        assert process.pid != old_pid


async def test_an_install_by_another_process_is_prewarmed_on_the_next_scan(
    fresh: Store, built_wheels: dict[str, Path], tmp_path: Path
) -> None:
    config = fresh.config(prewarm_on_install=True)
    runtime = write_runtime_toml(tmp_path / "runtime.toml", fresh.root, fresh.wheelhouse)
    wheel = built_wheels["echo"]
    async with Pool(config, fresh.manager(config)) as pool:
        done = await anyio.to_thread.run_sync(
            partial(
                subprocess.run,
                [sys.executable, "-m", "hiagent_host", "--config", str(runtime), "install",
                 str(wheel)],
                capture_output=True, text=True, env=subprocess_env(), timeout=CLI_TIMEOUT_S,
            )
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        await wait_for_async(lambda: _ready(pool), "the process of the CLI's install")
        assert pool.stats().starts == 1


async def test_without_the_option_an_install_starts_nothing(
    fresh: Store, built_wheels: dict[str, Path]
) -> None:
    config = fresh.config()
    assert config.pool.prewarm_on_install is False  # the documented default
    manager = fresh.manager(config)
    wheel = built_wheels["echo"]
    async with Pool(config, manager) as pool:
        install = partial(manager.install, wheel.as_uri(), wheel.name, force=False)
        await anyio.to_thread.run_sync(install)
        assert pool.snapshot() == []


async def test_prewarming_never_evicts_a_process_to_make_room(
    fresh: Store, built_wheels: dict[str, Path]
) -> None:
    config = fresh.config(prewarm_on_install=True, max_subprocess=1)
    manager = fresh.manager(config)
    async with Pool(config, manager) as pool:
        for name in ("echo", "pkg_nodeps"):
            wheel = built_wheels[name]
            install = partial(manager.install, wheel.as_uri(), wheel.name, force=False)
            await anyio.to_thread.run_sync(install)
        [process] = pool.snapshot()
        assert process.package == "hiagent-plugin-echo"
        assert pool.stats().evictions == 0


async def test_a_child_of_the_new_build_that_started_before_the_install_event_is_kept(
    fresh: Store, built_wheels: dict[str, Path]
) -> None:
    # What a prewarm scan (or a call) does when it sees the new record before the install's
    # own event reaches the pool: here a listener that runs before the pool's does it.
    config = fresh.config(prewarm_on_install=True)
    manager = fresh.manager(config)
    pool = Pool(config, manager)
    token = anyio.lowlevel.current_token()

    def early(event: PackageEvent) -> None:
        if event.record is not None:
            anyio.from_thread.run_sync(pool.prewarm, event.record, token=token)

    manager.add_listener(early)
    wheel = built_wheels["echo"]
    async with pool:
        install = partial(manager.install, wheel.as_uri(), wheel.name, force=False)
        record = await anyio.to_thread.run_sync(install)
        assert [p.state for p in pool.snapshot()] == ["ready"]  # the install waited for it
        answer = await pool.run_tool(record.name, record.version, "echo", "echo", {"b": 2}, None)
        assert answer == {"b": 2}
        assert pool.stats().starts == 1
