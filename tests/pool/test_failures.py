"""A child that fails (on import, mid-call, by signal, past a deadline) fails only its calls."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from hiagent_host.errors import (
    PLUGIN_CRASHED,
    PLUGIN_START_FAILED,
    PLUGIN_UNAVAILABLE,
    TOOL_TIMEOUT,
    HostError,
)
from hiagent_host.packages import names
from hiagent_host.pool import Pool
from hiagent_host.pool.procfs import is_running
from tests.pool.support import PACKAGES, Store, call, calls_running, open_pool, wait_for_async

pytestmark = pytest.mark.anyio


def data_dir(store: Store, fixture: str) -> Path:
    name = PACKAGES[fixture]
    return store.data_root / names.dir_name(name) / names.version_dir(store.versions[name])


@contextmanager
def import_marker(store: Store, name: str, content: str = "") -> Iterator[None]:
    """While active, pool_misbehave's processes misbehave while importing the plugin."""
    marker = data_dir(store, "pool_misbehave") / name
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(content)
    try:
        yield
    finally:
        marker.unlink()


@pytest.fixture
def crash_on_import(store: Store) -> Iterator[None]:
    """While active, pool_misbehave's processes exit (status 3) while importing the plugin."""
    with import_marker(store, "crash-on-import"):
        yield


async def outcome(pool: Pool, store: Store, fixture: str, tool: str, **kw: Any) -> Any:
    """The call's result, or the HostError it raised."""
    try:
        return await call(pool, store, fixture, tool, **kw)
    except HostError as exc:
        return exc


async def failure(pool: Pool, store: Store, fixture: str, tool: str, **kw: Any) -> HostError:
    """The HostError the call raises (it must raise one)."""
    with pytest.raises(HostError) as caught:
        await call(pool, store, fixture, tool, **kw)
    return caught.value


async def test_a_child_that_crashes_on_import_fails_to_start_with_its_stderr_tail(
    store: Store, crash_on_import: None
) -> None:
    async with open_pool(store) as pool:
        error = await failure(pool, store, "pool_misbehave", "echo", text="x")
        assert error.code == PLUGIN_START_FAILED
        assert error.http_status == 502
        assert error.data["exit_code"] == 3
        assert "crashing on import as asked" in error.data["stderr_tail"]
        assert pool.snapshot() == []
        assert pool.stats().crashes == 1


async def test_a_plugin_that_raises_on_import_fails_to_start_with_the_childs_error(
    store: Store,
) -> None:
    async with open_pool(store) as pool:
        with import_marker(store, "raise-on-import"):
            error = await failure(pool, store, "pool_misbehave", "echo", text="x")
        assert error.code == PLUGIN_START_FAILED
        assert error.data["error"]["code"] == "PluginImportFailed"
        assert "raising on import as asked" in error.data["stderr_tail"]
        assert await call(pool, store, "pool_misbehave", "echo", text="ok") == "ok"


async def test_a_child_that_does_not_finish_its_handshake_in_time_is_killed(
    store: Store,
) -> None:
    async with open_pool(store, store.config(start_timeout_s=0.5)) as pool:
        with import_marker(store, "slow-import", "3600"):
            error = await failure(pool, store, "pool_misbehave", "echo", text="x")
        assert error.code == PLUGIN_START_FAILED
        assert "error" not in error.data  # the child never answered
        assert pool.snapshot() == []


async def test_exit_mid_call_fails_every_call_in_flight_and_the_next_call_starts_afresh(
    store: Store,
) -> None:
    async with open_pool(store) as pool:
        errors: list[HostError] = []

        async def slow() -> None:
            errors.append(await failure(pool, store, "exit_mid_call", "slow", seconds=30))

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(slow)
            await wait_for_async(lambda: calls_running(pool, 1), "the slow calls in flight")
            [before] = pool.snapshot()
            await wait_for_async(lambda: pool.snapshot()[0].calls_in_flight == 3, "3 in flight")
            errors.append(await failure(pool, store, "exit_mid_call", "exit_now", code=5))

        assert [e.code for e in errors] == [PLUGIN_CRASHED] * 4
        for error in errors:
            assert error.data["exit_code"] == 5
            assert error.data["signal"] is None
            assert "exiting with status 5" in error.data["stderr_tail"]
        assert not is_running(before.pid or 0)
        assert await call(pool, store, "exit_mid_call", "slow", seconds=0) == "done"
        [after] = pool.snapshot()
        assert after.pid != before.pid
        assert after.restarts == 1
        assert after.last_exit_reason == "crashed: exit code 5"
        assert pool.stats().crashes == 1


async def test_a_child_killed_by_a_signal_is_reported_with_that_signal(store: Store) -> None:
    async with open_pool(store) as pool:
        error = await failure(pool, store, "segfault", "segfault")
        assert error.code == PLUGIN_CRASHED
        assert error.data["signal"] == "SIGSEGV"
        assert error.data["exit_code"] is None


async def test_an_async_tool_past_its_deadline_times_out_and_its_child_keeps_serving(
    store: Store,
) -> None:
    async with open_pool(store) as pool:
        assert await call(pool, store, "hang", "sleep_async", seconds=0) == "woke"
        [before] = pool.snapshot()
        name = PACKAGES["hang"]
        with pytest.raises(HostError) as caught:
            await pool.run_tool(
                name, store.versions[name], "hang", "sleep_async", {"seconds": 60}, None,
                timeout_s=0.3,
            )  # fmt: skip
        assert caught.value.code == TOOL_TIMEOUT
        assert caught.value.http_status == 504
        assert caught.value.data["cancel_acknowledged"] is True
        assert caught.value.data["killed"] is False
        assert await call(pool, store, "hang", "sleep_async", seconds=0) == "woke"
        assert [p.pid for p in pool.snapshot()] == [before.pid]
        assert pool.stats().timeouts == 1


async def test_a_sync_tool_past_its_deadline_times_out_and_its_child_is_replaced(
    store: Store,
) -> None:
    """sleep_sync's thread cannot be interrupted: the shim abandons it and says so, and the
    pool stops that child (it keeps a worker thread for good) and starts a fresh one."""
    async with open_pool(store) as pool:
        assert await call(pool, store, "hang", "sleep_async", seconds=0) == "woke"
        [before] = pool.snapshot()
        name = PACKAGES["hang"]
        with pytest.raises(HostError) as caught:
            await pool.run_tool(
                name, store.versions[name], "hang", "sleep_sync", {"seconds": 60}, None,
                timeout_s=0.3,
            )  # fmt: skip
        assert caught.value.code == TOOL_TIMEOUT
        assert caught.value.data["cancel_acknowledged"] is True
        assert caught.value.data["killed"] is False
        await wait_for_async(lambda: pool.snapshot() == [], "the old child to be gone")
        assert not is_running(before.pid or 0)
        assert await call(pool, store, "hang", "sleep_async", seconds=0) == "woke"
        [after] = pool.snapshot()
        assert after.pid != before.pid
        assert after.last_exit_reason == "replaced: a tool thread was abandoned: exit code 0"
        assert pool.stats().crashes == 0


async def test_a_child_that_cannot_answer_a_cancel_is_killed_and_replaced(store: Store) -> None:
    """block_loop wedges the child's event loop: the cancel goes unanswered for
    cancel_grace_s, so the child is killed. Another call in flight on the same child fails
    with PluginCrashed; a call on another child is untouched."""
    async with open_pool(store) as pool:
        assert await call(pool, store, "hang", "sleep_async", seconds=0) == "woke"
        [before] = pool.snapshot()
        name = PACKAGES["hang"]
        outcomes: dict[str, Any] = {}

        async def same_child() -> None:
            outcomes["same"] = await failure(pool, store, "hang", "sleep_async", seconds=60)

        async def other_child() -> None:
            outcomes["other"] = await call(pool, store, "pool_misbehave", "sleep_async", seconds=2)

        async with anyio.create_task_group() as tg:
            tg.start_soon(same_child)
            tg.start_soon(other_child)
            await wait_for_async(lambda: calls_running(pool, 2), "both calls in flight")
            with pytest.raises(HostError) as caught:
                await pool.run_tool(
                    name, store.versions[name], "hang", "block_loop", {"seconds": 60}, None,
                    timeout_s=0.3,
                )  # fmt: skip
        assert caught.value.code == TOOL_TIMEOUT
        assert caught.value.data["cancel_acknowledged"] is False
        assert caught.value.data["killed"] is True
        assert outcomes["same"].code == PLUGIN_CRASHED
        assert outcomes["same"].data["signal"] == "SIGKILL"
        assert outcomes["other"] == "slept"
        assert not is_running(before.pid or 0)
        assert await call(pool, store, "hang", "sleep_async", seconds=0) == "woke"
        assert before.pid not in {p.pid for p in pool.snapshot()}


async def test_a_callers_timeout_is_capped_at_max_call_timeout_s(store: Store) -> None:
    config = store.config(call_timeout_s=0.3, max_call_timeout_s=0.3)
    async with open_pool(store, config) as pool:
        name = PACKAGES["hang"]
        with pytest.raises(HostError) as caught:
            await pool.run_tool(
                name, store.versions[name], "hang", "sleep_async", {}, None, timeout_s=3600
            )
        assert caught.value.code == TOOL_TIMEOUT
        assert caught.value.data["timeout_s"] == 0.3


async def test_a_crash_looping_package_is_unavailable_until_its_cooldown_passes(
    store: Store,
) -> None:
    config = store.config(restart_limit=1, restart_window_s=60, restart_cooldown_s=1.0)
    async with open_pool(store, config) as pool:
        for _ in range(2):
            error = await failure(pool, store, "exit_mid_call", "exit_now", code=4)
            assert error.code == PLUGIN_CRASHED
        starts = pool.stats().starts

        error = await failure(pool, store, "exit_mid_call", "slow", seconds=0)

        assert error.code == PLUGIN_UNAVAILABLE
        assert error.http_status == 503
        assert error.data["retry_after_s"] >= 1
        assert pool.stats().starts == starts  # refused without starting anything
        with anyio.fail_after(30):  # the cooldown is time itself: probe until it has passed
            while (
                result := await outcome(pool, store, "exit_mid_call", "slow", seconds=0)
            ) != "done":
                assert result.code == PLUGIN_UNAVAILABLE
                await anyio.sleep(0.05)
        assert pool.stats().starts == starts + 1
