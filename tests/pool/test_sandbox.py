"""In its sandbox a plugin changes nothing but its data, sees nothing of the host's, leaves
nothing behind, and reaches no network when its package says so."""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
import msgspec
import pytest

from hiagent_host.config import AuthConfig, PackagePolicy
from hiagent_host.errors import PLUGIN_START_FAILED, HostError
from hiagent_host.packages import sandbox
from hiagent_host.pool import Pool, launcher
from hiagent_host.pool.procfs import is_running
from tests.pool.support import PACKAGES, Store, call, host_pid, open_pool

pytestmark = pytest.mark.anyio

ESCAPE: Final = PACKAGES["escape"]
CLOCK: Final = PACKAGES["clock"]
# A private /tmp this small, and a write twice its size.
SMALL_TMP_BYTES: Final = 2 * 1024 * 1024


@pytest.fixture(autouse=True)
def jailed(store: Store) -> None:
    """These tests need a sandbox; the machine tells why when it has none."""
    found = sandbox.status(store.config())
    if not found.active:
        pytest.skip(f"no sandbox on this machine: {found.reason}")


@pytest.fixture
def restore_escape(store: Store, built_wheels: dict[str, Path]) -> Iterator[None]:
    """Reinstall the escape package after a test that deleted it."""
    yield
    wheel = built_wheels["escape"]
    store.manager().install(wheel.as_uri(), wheel.name, force=True)


async def failure(pool: Pool, store: Store, tool: str, **tool_input: Any) -> HostError:
    """The error the escape plugin's `tool` ends with."""
    with pytest.raises(HostError) as caught:
        await call(pool, store, "escape", tool, **tool_input)
    return caught.value


async def reinstall(pool: Pool, wheel: Path) -> None:
    """Install `wheel` again (replacing its package) through the pool's package manager, in
    a worker thread as the API does; it returns once the old build's processes have stopped."""
    work = functools.partial(pool.packages.install, wheel.as_uri(), wheel.name, force=True)
    await anyio.to_thread.run_sync(work)


def site_file(venv: Path, relative: str) -> Path:
    [found] = venv.glob(f"lib/python*/site-packages/{relative}")
    return found


def inode(path: Path) -> int:
    return path.stat().st_ino


def contents(paths: Any) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in paths}


async def test_in_place_writes_to_its_sdk_a_shared_dependency_and_the_base_venv_fail_in_its_call(
    store: Store, built_wheels: dict[str, Path]
) -> None:
    manager = store.manager()
    clock_venv = manager.venv_dir(manager.get(CLOCK, store.versions[CLOCK]))
    [base] = (store.root / "venvs" / ".base").iterdir()
    base_sdk = site_file(base, "hiagent_plugin_sdk/__init__.py")
    async with open_pool(store) as pool:
        sdk = Path(await call(pool, store, "escape", "sdk_file"))
        dependency = Path(await call(pool, store, "escape", "dependency_file"))
        # the premise: these are the very inodes of the base venv and of clock's venv
        assert inode(sdk) == inode(base_sdk)
        assert inode(dependency) == inode(site_file(clock_venv, "pytz/__init__.py"))
        before = contents([sdk, dependency, base_sdk])
        for path in (sdk, dependency):
            error = await failure(pool, store, "append", path=str(path))
            assert error.code == "OSError"
            assert "Read-only file system" in error.message
        error = await failure(pool, store, "append", path=str(base_sdk))
        assert error.code == "FileNotFoundError"  # the base venv is not there at all
        assert contents(before) == before
        # everything goes on: this plugin, the other packages, a fresh start of one of them
        assert await call(pool, store, "escape", "sdk_file") == str(sdk)
        assert await call(pool, store, "pool_misbehave", "echo", text="fine") == "fine"
        await reinstall(pool, built_wheels["clock"])
        assert await call(pool, store, "clock", "current_time", timezone="UTC")


async def test_the_host_s_config_keys_logs_and_other_packages_data_are_not_there(
    store: Store, tmp_path: Path
) -> None:
    config_file = store.runtime_toml(tmp_path / "runtime.toml")
    keys = tmp_path / "keys.txt"
    keys.write_text("sk-host-secret\n", encoding="utf-8")
    config = msgspec.structs.replace(
        store.config(), source=str(config_file), auth=AuthConfig(api_keys_file=keys)
    )
    manager = store.manager(config)
    misbehave = manager.get(PACKAGES["pool_misbehave"], store.versions[PACKAGES["pool_misbehave"]])
    other_data = manager.data_dir(misbehave) / "secret.txt"
    other_data.write_text("another package's data", encoding="utf-8")
    log = manager.log_path(misbehave.name, misbehave.version)
    log.write_text("the host's log\n", encoding="utf-8")
    async with open_pool(store, config) as pool:
        for path in (config_file, keys, other_data, log):
            error = await failure(pool, store, "read", path=str(path))
            assert error.code == "FileNotFoundError", path
        # of the state directory, only the way to its own data directory is there
        own = await call(pool, store, "escape", "write_data", name="own.txt", text="mine")
        assert contents([Path(own)]) == {Path(own): b"mine"}
        state = store.root / "state"
        assert await call(pool, store, "escape", "listdir", path=str(state)) == ["data"]
        assert await call(pool, store, "escape", "read", path=own) == "mine"


async def test_it_runs_without_capabilities_or_new_privileges_with_a_bounded_private_tmp(
    store: Store,
) -> None:
    async with open_pool(store, store.config(sandbox_tmp_bytes=SMALL_TMP_BYTES)) as pool:
        status = await call(pool, store, "escape", "status")
        assert int(status["CapEff"], 16) == int(status["CapPrm"], 16) == 0
        assert status["NoNewPrivs"] == "1"
        assert status["pid"] == 2  # bwrap's init is pid 1 of its namespace
        assert status["tmpdir"] == "/tmp"
        error = await failure(pool, store, "append", path="/anywhere-else")
        assert error.code == "OSError"  # outside /tmp and its data, nothing is writable
        assert "Read-only file system" in error.message
        error = await failure(pool, store, "write_tmp", size_bytes=2 * SMALL_TMP_BYTES)
        assert error.code == "OSError"
        assert "No space left on device" in error.message
        assert await call(pool, store, "escape", "write_tmp", size_bytes=1024) == 1024


@pytest.mark.skipif(os.geteuid() != 0, reason="the private uid is for root hosts only")
async def test_as_root_a_process_limit_switches_the_real_uid_and_leaves_no_capability_at_all(
    store: Store,
) -> None:
    config = store.config(packages={ESCAPE: PackagePolicy(processes=100_000)})
    async with open_pool(store, config) as pool:
        status = await call(pool, store, "escape", "status")
        real, effective, _, _ = (int(uid) for uid in status["Uid"].split())
        assert real >= launcher.PRIVATE_UID_BASE
        assert effective == 0
        for kind in ("CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"):
            assert int(status[kind], 16) == 0, kind


async def test_a_double_forked_daemon_is_gone_once_its_package_is_replaced(
    store: Store, built_wheels: dict[str, Path]
) -> None:
    async with open_pool(store) as pool:
        daemon = host_pid(await call(pool, store, "escape", "spawn_daemon"))
        assert is_running(daemon)
        [child] = pool.snapshot()
        assert os.getsid(daemon) != os.getsid(child.pid or 0)  # it left the plugin's session
        await reinstall(pool, built_wheels["escape"])
        assert not is_running(daemon)


async def test_a_double_forked_daemon_is_gone_once_its_package_is_deleted(
    store: Store, restore_escape: None
) -> None:
    async with open_pool(store) as pool:
        daemon = host_pid(await call(pool, store, "escape", "spawn_daemon"))
        assert is_running(daemon)
        deleted = await anyio.to_thread.run_sync(
            pool.packages.delete, ESCAPE, store.versions[ESCAPE]
        )
        assert deleted
        assert not is_running(daemon)


async def test_without_network_a_plugin_cannot_reach_a_server_on_the_host_s_loopback(
    store: Store,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        offline = store.config(packages={ESCAPE: PackagePolicy(network=False)})
        async with open_pool(store, offline) as pool:
            error = await failure(pool, store, "connect", host="127.0.0.1", port=port)
            assert error.code == "ConnectionRefusedError"  # its own loopback, nobody there
            [info] = pool.snapshot()
            assert info.sandbox == "bubblewrap, no network"
        async with open_pool(store) as pool:
            assert await call(pool, store, "escape", "connect", host="127.0.0.1", port=port) == (
                "connected"
            )
            [info] = pool.snapshot()
            assert info.sandbox == "bubblewrap"


async def test_a_sandbox_that_cannot_be_set_up_is_plugin_start_failed_naming_the_step(
    store: Store,
) -> None:
    manager = store.manager()
    venv = manager.venv_dir(manager.get(ESCAPE, store.versions[ESCAPE]))
    aside = venv.with_name(venv.name + "-aside")
    async with open_pool(store) as pool:
        venv.rename(aside)  # the venv vanished from under the host
        try:
            error = await failure(pool, store, "sdk_file")
        finally:
            aside.rename(venv)
        assert error.code == PLUGIN_START_FAILED
        assert error.http_status == 502
        assert "sandbox could not be set up" in error.message
        assert str(venv) in error.data["sandbox_step"]
        assert await call(pool, store, "pool_misbehave", "echo", text="fine") == "fine"
        assert await call(pool, store, "escape", "sdk_file")  # and it starts once it is back
