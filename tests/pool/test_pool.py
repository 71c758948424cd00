"""The pool serves calls from long-lived children: reuse, concurrency, replicas, cap, idling."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from hiagent_host.config import PackagePolicy
from hiagent_host.errors import (
    INVALID_TOOL_INPUT,
    PACKAGE_NOT_FOUND,
    PLUGIN_ENTRY_NOT_FOUND,
    POOL_EXHAUSTED,
    STREAM_NOT_SUPPORTED,
    TOOL_NOT_FOUND,
    HostError,
)
from hiagent_host.pool import ChildState, Pool
from hiagent_host.pool.procfs import is_running
from tests.pool.support import (
    Store,
    call,
    calls_running,
    host_pid,
    open_pool,
    plugin_pid,
    wait_for_async,
)

pytestmark = pytest.mark.anyio

MIS = "pool-misbehave"
PLUGIN = "Misbehave"
ECHO = "hiagent-plugin-echo"


async def mis(pool: Pool, store: Store, tool: str, **tool_input: Any) -> Any:
    return await pool.run_tool(MIS, store.versions[MIS], PLUGIN, tool, tool_input, None)


async def sleep(pool: Pool, store: Store, seconds: float) -> Any:
    return await mis(pool, store, "sleep_async", seconds=seconds)


def pids(pool: Pool) -> set[int]:
    return {p.pid or 0 for p in pool.snapshot()}


async def test_calls_reuse_one_long_lived_child(store: Store) -> None:
    async with open_pool(store) as pool:
        first = await plugin_pid(pool, store)
        second = await plugin_pid(pool, store)
        assert first == second
        assert pids(pool) == {first}
        assert pool.stats().starts == 1
        [info] = pool.snapshot()
        assert info.calls_total == 2
    assert not is_running(first)


async def test_any_spelling_of_the_name_and_an_equal_version_reach_the_same_child(
    store: Store,
) -> None:
    async with open_pool(store) as pool:
        first = await plugin_pid(pool, store)
        again = host_pid(await pool.run_tool("POOL_Misbehave", "1.0", PLUGIN, "pid", {}, None))
        assert again == first


async def test_concurrent_first_calls_start_exactly_one_child(store: Store) -> None:
    async with open_pool(store) as pool:
        results: list[Any] = []

        async def one() -> None:
            results.append(await plugin_pid(pool, store))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(one)
        assert len(set(results)) == 1
        assert pool.stats().starts == 1


async def test_replicas_spread_concurrent_calls_over_that_many_children(store: Store) -> None:
    config = store.config(packages={MIS: PackagePolicy(replicas=2)})
    async with open_pool(store, config) as pool:
        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(sleep, pool, store, 0.3)
            await wait_for_async(
                lambda: sum(p.calls_in_flight for p in pool.snapshot()) == 6, "6 calls in flight"
            )
            infos = pool.snapshot()
            assert sorted(p.replica for p in infos) == [0, 1]
            assert sorted(p.calls_in_flight for p in infos) == [3, 3]
        assert pool.stats().starts == 2


async def test_snapshot_describes_each_child(store: Store) -> None:
    async with open_pool(store) as pool:
        pid = await plugin_pid(pool, store)
        [info] = pool.snapshot()
        assert (info.package, info.version, info.pid) == (MIS, store.versions[MIS], pid)
        assert info.state is ChildState.READY
        assert info.calls_in_flight == 0
        assert info.restarts == 0
        assert info.last_exit_reason is None
        assert info.rss_bytes is not None
        assert info.rss_bytes > 1_000_000
        assert info.uptime_s >= 0
        stats = pool.stats()
        assert (stats.processes, stats.busy, stats.idle) == (1, 0, 1)


async def test_at_the_cap_the_least_recently_used_idle_child_is_evicted_never_a_busy_one(
    store: Store,
) -> None:
    config = store.config(max_subprocess=2)
    async with open_pool(store, config) as pool, anyio.create_task_group() as tg:
        tg.start_soon(sleep, pool, store, 30)
        # Busy counts from the call's acquire, which comes before the child has a pid.
        await wait_for_async(lambda: calls_running(pool, 1), "the misbehave call in flight")
        [busy] = pool.snapshot()
        await pool.run_tool(ECHO, store.versions[ECHO], "echo", "echo", {"a": 1}, None)
        [echo_pid] = pids(pool) - {busy.pid}

        woke = await call(pool, store, "hang", "sleep_async", seconds=0)

        assert woke == "woke"
        assert pool.stats().evictions == 1
        assert busy.pid in pids(pool)  # the busy child was not touched
        assert echo_pid not in pids(pool)
        assert not is_running(echo_pid)
        tg.cancel_scope.cancel()


async def test_when_every_child_stays_busy_a_call_fails_with_pool_exhausted(store: Store) -> None:
    config = store.config(max_subprocess=1, acquire_timeout_s=0.3)
    async with open_pool(store, config) as pool, anyio.create_task_group() as tg:
        tg.start_soon(sleep, pool, store, 30)
        await wait_for_async(lambda: calls_running(pool, 1), "the call in flight")
        with pytest.raises(HostError) as caught:
            await pool.run_tool(ECHO, store.versions[ECHO], "echo", "echo", {}, None)
        assert caught.value.code == POOL_EXHAUSTED
        assert caught.value.http_status == 503
        assert caught.value.data["retry_after_s"] >= 1
        assert pool.stats().processes == 1
        tg.cancel_scope.cancel()


async def test_a_waiting_call_takes_the_slot_when_a_busy_child_goes_idle(store: Store) -> None:
    config = store.config(max_subprocess=1)
    async with open_pool(store, config) as pool, anyio.create_task_group() as tg:
        tg.start_soon(sleep, pool, store, 0.5)
        await wait_for_async(lambda: calls_running(pool, 1), "the call in flight")
        result = await pool.run_tool(ECHO, store.versions[ECHO], "echo", "echo", {"x": 2}, None)
        assert result == {"x": 2}
        assert pool.stats().evictions == 1


async def test_a_child_idle_longer_than_idle_timeout_stops(store: Store) -> None:
    async with open_pool(store, store.config(idle_timeout_s=0.3)) as pool:
        pid = await plugin_pid(pool, store)
        await wait_for_async(lambda: not pool.snapshot(), "the idle child to stop")
        assert pool.stats().idle_stops == 1
        assert not is_running(pid)
        assert await plugin_pid(pool, store) != pid  # the next call starts a fresh one


async def test_a_stream_yields_items_as_they_come(store: Store) -> None:
    async with open_pool(store) as pool:
        version = store.versions[MIS]
        async with pool.stream_tool(MIS, version, PLUGIN, "count", {"n": 5}, None) as items:
            assert [item async for item in items] == [0, 1, 2, 3, 4]


async def test_leaving_a_stream_early_releases_the_child(store: Store) -> None:
    async with open_pool(store) as pool:
        version = store.versions[MIS]
        tool_input = {"n": 10_000, "delay_s": 0.01}
        async with pool.stream_tool(MIS, version, PLUGIN, "count", tool_input, None) as items:
            async for item in items:
                if item == 2:
                    break
        assert pool.stats().busy == 0
        assert await mis(pool, store, "echo", text="after") == "after"


@pytest.mark.parametrize(
    ("plugin", "tool", "code"),
    [
        (PLUGIN, "echo", STREAM_NOT_SUPPORTED),
        (PLUGIN, "no_such_tool", TOOL_NOT_FOUND),
        ("NoSuchPlugin", "count", PLUGIN_ENTRY_NOT_FOUND),
    ],
)
async def test_a_stream_that_cannot_start_raises_on_entry(
    store: Store, plugin: str, tool: str, code: str
) -> None:
    async with open_pool(store) as pool:
        stream = pool.stream_tool(MIS, store.versions[MIS], plugin, tool, {"text": "x"}, None)
        with pytest.raises(HostError) as caught:
            await stream.__aenter__()
        assert caught.value.code == code
        assert pool.stats().busy == 0


async def test_a_plugins_own_errors_keep_their_code(store: Store) -> None:
    async with open_pool(store) as pool:
        with pytest.raises(HostError) as caught:
            await mis(pool, store, "echo", text=["not", "a", "string"])
        assert caught.value.code == INVALID_TOOL_INPUT
        assert caught.value.http_status == 422


async def test_an_unknown_package_is_package_not_found(store: Store) -> None:
    async with open_pool(store) as pool:
        with pytest.raises(HostError) as caught:
            await pool.run_tool("no-such-package", "1.0", PLUGIN, "echo", {}, None)
        assert caught.value.code == PACKAGE_NOT_FOUND
        assert pool.stats().starts == 0


async def test_validate_and_metadata_are_answered_by_the_child(store: Store) -> None:
    async with open_pool(store) as pool:
        await pool.validate(MIS, store.versions[MIS], PLUGIN, None)
        metadata = await pool.metadata(MIS, store.versions[MIS])
        assert set(metadata) == {PLUGIN}
        assert pool.stats().starts == 1
