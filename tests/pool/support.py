"""Helpers for the pool tests: the installed store, configs, and probes of the process table."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio
import msgspec

from hiagent_host.config import Config, PackagePolicy, PoolConfig
from hiagent_host.packages import PackageManager
from hiagent_host.pool import Pool
from hiagent_host.pool.procfs import is_running
from tests.support.configs import offline_config

# Every wait on a probe in these tests is bounded by this (a start imports pydantic: ~0.5 s).
WAIT_S: Final = 30.0
POLL_S: Final = 0.02
# Fixture directory → distribution name, for the packages the pool tests install.
PACKAGES: Final = {
    "pool_misbehave": "pool-misbehave",
    "echo": "hiagent-plugin-echo",
    "exit_mid_call": "hiagent-plugin-exit-mid-call",
    "segfault": "hiagent-plugin-segfault",
    "hang": "hiagent-plugin-hang",
    "noisy": "hiagent-plugin-noisy",
    "memhog": "hiagent-plugin-memhog",
    "forkbomb": "hiagent-plugin-forkbomb",
    "grandchild": "hiagent-plugin-grandchild",
    "secret": "hiagent-plugin-secret",
    "escape": "hiagent-plugin-escape",
    "clock": "hiagent-plugin-clock",
}
# Entry-point names that differ from the fixture directory's.
PLUGIN_NAMES: Final = {"pool_misbehave": "Misbehave", "clock": "时间工具"}
# Test settings: short waits, so misbehaving children cost little time.
TEST_POOL: Final = {
    "stop_grace_s": 0.5,
    "cancel_grace_s": 0.5,
    "drain_timeout_s": 5.0,
    "acquire_timeout_s": 5.0,
    "call_timeout_s": 20.0,
    "start_timeout_s": 30.0,
}


@dataclass(frozen=True)
class Store:
    """The session's installed packages: where they are and how to configure a pool on them."""

    root: Path
    wheelhouse: Path
    versions: dict[str, str]  # distribution name → installed version

    def config(self, *, packages: dict[str, PackagePolicy] | None = None, **pool: Any) -> Config:
        pool_config = msgspec.structs.replace(
            PoolConfig(), **(TEST_POOL | pool), packages=packages or {}
        )
        base = offline_config(self.root, self.wheelhouse)
        return msgspec.structs.replace(base, pool=pool_config)

    def manager(self, config: Config | None = None) -> PackageManager:
        return PackageManager(config or self.config())

    def runtime_toml(self, path: Path) -> Path:
        """A runtime.toml with this store's directories (for host subprocesses)."""
        path.write_text(
            "[paths]\n"
            + "".join(
                f'{key}_dir = "{self.root / key}"\n' for key in ("extensions", "venvs", "state")
            ),
            encoding="utf-8",
        )
        return path

    @property
    def data_root(self) -> Path:
        return self.root / "state" / "data"


def plugin_of(fixture: str) -> str:
    """The entry-point name of a fixture package's plugin."""
    return PLUGIN_NAMES.get(fixture, fixture)


async def call(pool: Pool, store: Store, fixture: str, tool: str, **tool_input: Any) -> Any:
    """Run `tool` of fixture package `fixture` through `pool`."""
    name = PACKAGES[fixture]
    return await pool.run_tool(
        name, store.versions[name], plugin_of(fixture), tool, tool_input, None
    )


def plugin_processes(store: Store) -> list[int]:
    """Live processes started for this store's packages, grandchildren included.

    Found by their environment (every process a plugin starts inherits it unless it scrubs
    it): HIAGENT_PLUGIN_DATA_DIR points under the store's data root.
    """
    marker = f"HIAGENT_PLUGIN_DATA_DIR={store.data_root}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if any(v.startswith(marker) for v in environ.split(b"\0")) and is_running(int(entry.name)):
            found.append(int(entry.name))
    return found


def pid_namespace(pid: int) -> int:
    """The inode of the PID namespace of host process `pid`."""
    return Path(f"/proc/{pid}/ns/pid").stat().st_ino


def host_pid(found: dict[str, int]) -> int:
    """The host's pid of a process a plugin named as `{"pid", "pidns"}` (its pid in its own
    PID namespace, which in a sandbox is not the host's); 0 if it is gone."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "ns" / "pid").stat().st_ino != found["pidns"]:
                continue
            status = (entry / "status").read_text(encoding="ascii")
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:") and int(line.split()[-1]) == found["pid"]:
                return int(entry.name)
    return 0


async def plugin_pid(pool: Pool, store: Store) -> int:
    """The host's pid of pool_misbehave's plugin process (its `pid` tool, mapped)."""
    return host_pid(await call(pool, store, "pool_misbehave", "pid"))


def calls_running(pool: Pool, count: int) -> bool:
    """`count` calls are in flight, each on a child that has started (in a sandbox, a child's
    pid is known once it has answered its handshake)."""
    return pool.stats().busy == count and all(p.pid is not None for p in pool.snapshot())


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll a cheap probe of outside state (the process table) until true, bounded."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout_s} s")
        time.sleep(POLL_S)


async def wait_for_async(predicate: Callable[[], bool], what: str) -> None:
    """`wait_for` inside a test's event loop (the pool keeps running meanwhile)."""
    with anyio.fail_after(WAIT_S):
        while not predicate():  # noqa: ASYNC110 - a probe of state that signals nothing
            await anyio.sleep(POLL_S)


@asynccontextmanager
async def open_pool(store: Store, config: Config | None = None) -> AsyncIterator[Pool]:
    """A pool on the store; once it has closed, no process of the store may be left."""
    config = config or store.config()
    assert plugin_processes(store) == [], "processes left over from an earlier test"
    async with Pool(config, store.manager(config)) as pool:
        yield pool
    assert plugin_processes(store) == [], "the pool left processes behind"
