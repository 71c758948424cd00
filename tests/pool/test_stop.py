"""Children stop cleanly: drained, down the ladder, with their grandchildren, and with the host."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
import pytest

from hiagent_host.errors import PLUGIN_UNAVAILABLE, SHUTTING_DOWN, HostError
from hiagent_host.pool import Pool
from hiagent_host.pool.procfs import group_members, is_running
from tests.pool.support import (
    PACKAGES,
    Store,
    call,
    calls_running,
    host_pid,
    open_pool,
    pid_namespace,
    plugin_processes,
    wait_for,
    wait_for_async,
)

pytestmark = pytest.mark.anyio

MIS: Final = PACKAGES["pool_misbehave"]
EXIT: Final = PACKAGES["exit_mid_call"]
REPO: Final = Path(__file__).resolve().parents[2]
# The host process of the SIGKILL test prints one JSON line once its children run.
HOST_SCRIPT: Final = """
import json, sys
import anyio
from hiagent_host.config import load_config
from hiagent_host.packages import PackageManager
from hiagent_host.pool import Pool

async def main() -> None:
    config = load_config(sys.argv[1], use_lookup=False, environ={})
    async with Pool(config, PackageManager(config)) as pool, anyio.create_task_group() as tg:
        for name, version, plugin, tool, tool_input in json.loads(sys.argv[2]):
            tg.start_soon(pool.run_tool, name, version, plugin, tool, tool_input, None)
        while [(p.state, p.calls_in_flight) for p in pool.snapshot()] != [("ready", 1)] * 2:
            await anyio.sleep(0.02)
        print(json.dumps([p.pid for p in pool.snapshot()]), flush=True)
        await anyio.sleep_forever()

anyio.run(main)
"""

# Deletes a fixture package through the pool's package manager (see `delete`).
Delete = Callable[[Pool, str], Awaitable[None]]


@pytest.fixture
def delete(store: Store, built_wheels: dict[str, Path]) -> Iterator[Delete]:
    """Stop a package's children as the host does: delete the package through the pool's
    package manager, whose listener has the pool drain and stop them before it returns (in a
    worker thread, as the API calls it). The session's builds are reinstalled afterwards."""
    deleted: list[str] = []

    async def delete(pool: Pool, fixture: str) -> None:
        name = PACKAGES[fixture]
        deleted.append(fixture)
        gone = await anyio.to_thread.run_sync(pool.packages.delete, name, store.versions[name])
        assert gone

    yield delete
    manager = store.manager()
    for fixture in deleted:
        wheel = built_wheels[fixture]
        record = manager.install(wheel.as_uri(), wheel.name, force=True)
        assert record.version == store.versions[PACKAGES[fixture]]


async def outcome(pool: Pool, store: Store, fixture: str, tool: str, **kw: Any) -> Any:
    """The call's result, or the HostError it raised."""
    try:
        return await call(pool, store, fixture, tool, **kw)
    except HostError as exc:
        return exc


async def test_deleting_a_package_lets_calls_in_flight_finish_then_stops_the_child(
    store: Store, delete: Delete
) -> None:
    async with open_pool(store) as pool:
        results: list[Any] = []

        async def sleeper() -> None:
            results.append(await outcome(pool, store, "pool_misbehave", "sleep_async", seconds=0.5))

        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper)
            await wait_for_async(lambda: calls_running(pool, 1), "the call in flight")
            [child] = pool.snapshot()
            await delete(pool, "pool_misbehave")
        assert results == ["slept"]
        assert pool.snapshot() == []
        assert not is_running(child.pid or 0)


async def test_a_call_outliving_the_drain_fails_with_plugin_unavailable(
    store: Store, delete: Delete
) -> None:
    async with open_pool(store, store.config(drain_timeout_s=0.2)) as pool:
        results: list[Any] = []

        async def sleeper() -> None:
            results.append(await outcome(pool, store, "pool_misbehave", "sleep_async", seconds=60))

        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper)
            await wait_for_async(lambda: calls_running(pool, 1), "the call in flight")
            await delete(pool, "pool_misbehave")
        [error] = results
        assert error.code == PLUGIN_UNAVAILABLE
        assert error.data["retry_after_s"] == 1  # the HTTP answer's Retry-After
        assert pool.snapshot() == []


async def test_host_shutdown_drains_calls_then_cuts_the_rest_with_shutting_down(
    store: Store,
) -> None:
    results: dict[str, Any] = {}

    async def run(pool: Pool, key: str, fixture: str, seconds: float) -> None:
        tool = "sleep_async" if fixture == "pool_misbehave" else "slow"
        results[key] = await outcome(pool, store, fixture, tool, seconds=seconds)

    async with anyio.create_task_group() as tg:
        async with open_pool(store, store.config(drain_timeout_s=1.0)) as pool:
            tg.start_soon(run, pool, "short", "pool_misbehave", 0.2)
            tg.start_soon(run, pool, "long", "exit_mid_call", 60)
            await wait_for_async(lambda: calls_running(pool, 2), "both calls in flight")
        with pytest.raises(HostError) as caught:
            await call(pool, store, "pool_misbehave", "echo", text="late")
        assert caught.value.code == SHUTTING_DOWN
    assert results["short"] == "slept"
    assert results["long"].code == SHUTTING_DOWN


async def test_a_wedged_child_that_ignores_sigterm_is_ended_by_sigkill(
    store: Store, delete: Delete
) -> None:
    """hold_gil keeps every thread of the child from running: no answer to `shutdown`, no
    reaction to EOF, and SIGTERM is ignored; only the ladder's last rung ends it."""
    async with open_pool(store, store.config(drain_timeout_s=0.1)) as pool:
        pid = host_pid(await call(pool, store, "pool_misbehave", "ignore_sigterm"))
        results: list[Any] = []

        async def wedge() -> None:
            results.append(await outcome(pool, store, "pool_misbehave", "hold_gil", seconds=3600))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wedge)
            await wait_for_async(lambda: calls_running(pool, 1), "the wedging call in flight")
            await delete(pool, "pool_misbehave")
        [error] = results
        assert error.code == PLUGIN_UNAVAILABLE
        assert error.data["signal"] == "SIGKILL"
        assert not is_running(pid)


@pytest.mark.parametrize(
    ("fixture", "tool", "tool_input"),
    [
        ("grandchild", "spawn_sleeper", {"seconds": 3600}),
        ("pool_misbehave", "spawn_grandchild", {"ignore_sigterm": True}),
    ],
)
async def test_grandchildren_die_with_their_child(
    store: Store, delete: Delete, fixture: str, tool: str, tool_input: dict[str, Any]
) -> None:
    async with open_pool(store) as pool:
        found = await call(pool, store, fixture, tool, **tool_input)
        [child] = pool.snapshot()
        if isinstance(found, int):  # the grandchild fixture names it by its pid alone
            found = {"pid": found, "pidns": pid_namespace(child.pid or 0)}
        grandchild = host_pid(found)
        assert is_running(grandchild)
        group = os.getpgid(child.pid or 0)  # the child's (in a sandbox, led by bwrap's init)
        assert os.getpgid(grandchild) == group
        await delete(pool, fixture)
        assert not is_running(grandchild)
        assert group_members(group) == []


def test_children_die_with_the_host_even_wedged_ones_when_it_is_killed_with_sigkill(
    store: Store, tmp_path: Path
) -> None:
    config_file = store.runtime_toml(tmp_path / "runtime.toml")
    calls = [  # one child stays responsive, the other is wedged (only SIGKILL ends it)
        [MIS, store.versions[MIS], "Misbehave", "hold_gil", {"seconds": 3600}],
        [EXIT, store.versions[EXIT], "exit_mid_call", "slow", {"seconds": 3600}],
    ]
    host = subprocess.Popen(
        [sys.executable, "-c", HOST_SCRIPT, str(config_file), json.dumps(calls)],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert host.stdout is not None
        children = json.loads(host.stdout.readline())
        assert len(children) == 2
        assert all(is_running(pid) for pid in children)
        host.send_signal(signal.SIGKILL)
        host.wait(timeout=10)
        wait_for(lambda: not any(is_running(pid) for pid in children), "children to exit", 10)
        assert plugin_processes(store) == []
    finally:
        if host.poll() is None:
            host.kill()
            host.wait(timeout=10)
        if host.stdout is not None:
            host.stdout.close()
