"""Plugins that crash, fork, leak or leave processes behind: the peer reports, nothing hangs."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import pytest

from hiagent_host.errors import PLUGIN_CRASHED, HostError
from tests.shim.support import Shim, running_shim


async def crash_code(shim: Shim, plugin: str, tool: str, tool_input: dict[str, int]) -> str:
    try:
        await shim.run_tool(plugin, tool, tool_input, timeout_s=None)
    except HostError as exc:
        return exc.code
    return "answered"


@pytest.mark.anyio
async def test_a_tool_calling_os_exit_fails_every_call_in_flight_at_once(
    shim_python: Path, data_dir: Path
) -> None:
    codes: list[str] = []
    async with running_shim(shim_python, "hiagent-plugin-exit-mid-call", data_dir) as shim:

        async def slow() -> None:
            codes.append(await crash_code(shim, "exit_mid_call", "slow", {"seconds": 3600}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow)
            tg.start_soon(slow)
            codes.append(await crash_code(shim, "exit_mid_call", "exit_now", {"code": 3}))
        assert await shim.exit_status() == 3
    assert codes == [PLUGIN_CRASHED] * 3


@pytest.mark.anyio
async def test_a_segfault_is_a_crash_with_the_signal_as_exit_status(
    shim_python: Path, data_dir: Path
) -> None:
    async with running_shim(shim_python, "hiagent-plugin-segfault", data_dir) as shim:
        assert await crash_code(shim, "segfault", "segfault", {}) == PLUGIN_CRASHED
        assert await shim.exit_status() == -signal.SIGSEGV


@pytest.mark.anyio
async def test_a_grandchild_lives_in_the_shims_process_group(
    shim_python: Path, data_dir: Path
) -> None:
    async with running_shim(shim_python, "hiagent-plugin-grandchild", data_dir) as shim:
        pid = await shim.run_tool("grandchild", "spawn_sleeper", {"seconds": 3600})
        assert os.getpgid(pid) == shim.process.pid  # so killing the group reaps it too


@pytest.mark.anyio
async def test_fork_and_memory_hogs_run_to_their_limits(shim_python: Path, data_dir: Path) -> None:
    async with running_shim(shim_python, "hiagent-plugin-forkbomb", data_dir) as shim:
        assert await shim.run_tool("forkbomb", "fork_until_failure", {"limit": 5}) == 5
    async with running_shim(shim_python, "hiagent-plugin-memhog", data_dir) as shim:
        assert await shim.run_tool("memhog", "allocate", {"chunk_mb": 8, "limit_mb": 32}) == 32
