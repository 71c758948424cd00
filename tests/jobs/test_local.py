"""The local backend across processes and restarts: records on disk, owners by flock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from hiagent_host.config import Config
from hiagent_host.jobs import JobStatus, LocalBackend
from hiagent_host.jobs.local import SCHEMA_VERSION
from hiagent_host.packages import PackageManager
from tests.jobs.helpers import (
    ROOT,
    StallServer,
    ended,
    leftovers,
    stalled,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.anyio

NODEPS = "pkg_nodeps"
ONEDEP = "pkg_onedep"
# The child server prints its job ids within this (it only has to start two jobs).
CHILD_READY_S = 60.0

# A stand-in for a server process: it submits two installs (the first stalls, the second
# waits for the only slot), prints both ids, and waits to be killed.
CHILD = """
import sys, anyio
from hiagent_host.config import load_config
from hiagent_host.jobs import LocalBackend
from hiagent_host.packages import PackageManager

async def main(config_path, first, second):
    config = load_config(config_path)
    async with LocalBackend(config, PackageManager(config)) as jobs:
        a = await jobs.submit(first, first.rsplit("/", 1)[1], False)
        with anyio.fail_after(60):
            while (await jobs.status(a)).phase != "installing dependencies":
                await anyio.sleep(0.02)
        b = await jobs.submit(second, second.rsplit("/", 1)[1], False)
        print(a, b, flush=True)
        await anyio.sleep_forever()

anyio.run(main, *sys.argv[1:])
"""


def start_child(config: Config, first: Path, second: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIAGENT_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, config.source, first.as_uri(), second.as_uri()],
        stdout=subprocess.PIPE, env=env, start_new_session=True,
    )  # fmt: skip


@pytest.fixture
def config(tmp_path: Path, wheelhouse: Path, stall: StallServer) -> Config:
    return write_config(
        tmp_path / "runtime.toml", tmp_path, wheelhouse=wheelhouse, find_links=[stall.url],
        queue={"backend": "local", "worker_concurrency": 1},
    )  # fmt: skip


def local(config: Config) -> LocalBackend:
    return LocalBackend(config, PackageManager(config))


async def test_jobs_of_a_killed_server_are_reported_interrupted_and_rewritten_at_next_start(
    config: Config, built_wheels: dict[str, Path], tmp_path: Path
) -> None:
    first, second = built_wheels[NODEPS], built_wheels[ONEDEP]
    child = start_child(config, first, second)
    try:
        assert child.stdout is not None
        with anyio.fail_after(CHILD_READY_S):
            line = await anyio.to_thread.run_sync(child.stdout.readline)
        running_id, queued_id = line.decode().split()
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()

    packages = PackageManager(config)
    async with local(config) as jobs:
        running = await jobs.status(running_id)
        queued = await jobs.status(queued_id)
    # Killed mid-install: not installed (no record, no venv link); the half-built venv goes
    # with the package manager's recovery at start.
    assert not (config.extensions_dir / "pkg_nodeps" / "1.0.0").exists()
    assert not (config.venvs_dir / "pkg_nodeps" / "1.0.0").exists()
    await anyio.to_thread.run_sync(packages.recover)
    on_disk = json.loads((config.state_dir / "jobs" / f"{running_id}.json").read_text())

    assert running.status is JobStatus.FAILED
    assert running.reason == "Interrupted: the server stopped while this job was running"
    assert queued.status is JobStatus.FAILED
    assert queued.reason == "Interrupted: the server stopped while this job was queued"
    assert on_disk["state"] == "failed"
    assert on_disk["schema"] == SCHEMA_VERSION
    assert leftovers(config, "pkg_nodeps") == []


async def test_a_stopping_server_marks_its_running_install_interrupted(
    config: Config, built_wheels: dict[str, Path]
) -> None:
    wheel = built_wheels[NODEPS]
    async with local(config) as jobs:
        job_id = await jobs.submit(wheel.as_uri(), wheel.name, False)
        await wait_for(jobs, job_id, stalled)
    async with local(config) as jobs:
        info = await jobs.status(job_id)
        retried = await jobs.retry(job_id)
        assert retried == job_id
        assert (await jobs.status(job_id)).status.active
        await jobs.cancel(job_id)
    assert info.status is JobStatus.FAILED
    assert info.reason == "Interrupted: the server stopped while this job was running"
    assert leftovers(config, "pkg_nodeps") == []


async def test_server_processes_sharing_a_state_dir_see_and_cancel_each_others_jobs(
    config: Config, built_wheels: dict[str, Path]
) -> None:
    wheel = built_wheels[NODEPS]
    async with local(config) as one, local(config) as two:
        job_id = await one.submit(wheel.as_uri(), wheel.name, False)
        seen_by_two = await wait_for(two, job_id, stalled)
        assert await two.submit(wheel.as_uri(), wheel.name, False) == job_id
        await two.cancel(job_id)
        stopped = await wait_for(one, job_id, ended)
    assert seen_by_two.attempts == 1
    assert stopped.status is JobStatus.STOPPED
    assert leftovers(config, "pkg_nodeps") == []
