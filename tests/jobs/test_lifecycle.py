"""The job lifecycle, the same on both backends: real installs of real fixture wheels.

The redis backend runs here with its in-process worker (`with_worker`); the tests with
separate worker processes are in test_redis.py. A `StallServer` in the find-links makes an
install wait in "installing dependencies" until the test releases it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from hiagent_host.config import Config
from hiagent_host.errors import (
    ALREADY_INSTALLED,
    CANCELLED,
    INVALID_JOB_STATE,
    INVALID_PACKAGE,
    JOB_NOT_FOUND,
    HostError,
)
from hiagent_host.jobs import JobBackend, JobStatus, make_backend
from hiagent_host.packages import PHASES, PackageManager
from tests.jobs.helpers import (
    RedisServer,
    StallServer,
    broken_wheel,
    ended,
    leftovers,
    stalled,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.anyio

NODEPS = "pkg_nodeps"  # METADATA: pkg-nodeps 1.0.0
ONEDEP = "pkg_onedep"  # METADATA: pkg_onedep 0.3


@pytest.fixture(params=["local", "redis"])
def queue(request: pytest.FixtureRequest) -> dict[str, Any]:
    """[queue] settings of one backend: local, or redis with a worker in this process."""
    if request.param == "local":
        return {"backend": "local", "worker_concurrency": 1}
    redis: RedisServer = request.getfixturevalue("redis")
    return {
        "backend": "redis",
        "redis_url": redis.url,
        "with_worker": True,
        "worker_concurrency": 1,
        "connect_timeout_s": 2.0,
    }


@pytest.fixture
def config(tmp_path: Path, wheelhouse: Path, stall: StallServer, queue: dict[str, Any]) -> Config:
    return write_config(
        tmp_path / "runtime.toml", tmp_path, wheelhouse=wheelhouse, find_links=[stall.url],
        queue=queue,
    )  # fmt: skip


def backend_for(config: Config) -> JobBackend:
    return make_backend(config, PackageManager(config))


def uri(wheel: Path) -> str:
    return wheel.as_uri()


async def test_an_install_goes_queued_started_finished_with_phases_and_its_package(
    config: Config, built_wheels: dict[str, Path], stall: StallServer
) -> None:
    first, second = built_wheels[NODEPS], built_wheels[ONEDEP]
    async with backend_for(config) as jobs:
        first_id = await jobs.submit(uri(first), first.name, False)
        seen_first: list[Any] = []
        await wait_for(jobs, first_id, stalled, seen=seen_first)
        second_id = await jobs.submit(uri(second), second.name, False)
        queued = await jobs.status(second_id)
        assert queued.status is JobStatus.QUEUED  # the only slot is busy
        assert queued.attempts == 0
        assert queued.started_at is None

        stall.release()
        seen_second: list[Any] = []
        done = await wait_for(jobs, second_id, ended, seen=seen_second)
        first_done = await jobs.status(first_id)

    assert first_done.status is JobStatus.FINISHED
    assert first_done.data == {
        "name": "pkg-nodeps", "version": "1.0.0", "uri": uri(first), "filename": first.name,
    }  # fmt: skip
    phases = {info.phase for info in seen_first if info.phase}
    assert phases <= set(PHASES)
    assert "installing dependencies" in phases
    assert done.status is JobStatus.FINISHED, done.reason
    assert done.data is not None
    assert (done.data["name"], done.data["version"]) == ("pkg_onedep", "0.3")
    assert done.reason is None
    assert done.attempts == 1
    assert done.started_at is not None
    assert done.finished_at is not None
    order = [JobStatus.QUEUED, JobStatus.STARTED, JobStatus.FINISHED]
    statuses = [info.status for info in seen_second]
    assert statuses == sorted(statuses, key=order.index)
    assert statuses[0] is JobStatus.QUEUED
    assert (config.extensions_dir / "pkg_onedep" / "0.3" / "package.json").is_file()


async def test_a_bad_wheel_fails_with_an_invalid_package_reason(
    config: Config, tmp_path: Path
) -> None:
    bad = broken_wheel(tmp_path)
    async with backend_for(config) as jobs:
        job_id = await jobs.submit(uri(bad), bad.name, False)
        info = await wait_for(jobs, job_id, ended)
    assert info.status is JobStatus.FAILED
    assert info.reason is not None
    assert info.reason.startswith(f"{INVALID_PACKAGE}: ")
    assert info.data is None
    assert info.phase is None


async def test_jobs_are_listed_newest_first_with_their_status(
    config: Config, tmp_path: Path
) -> None:
    wheels = [broken_wheel(tmp_path, name) for name in ("first", "second", "third")]
    async with backend_for(config) as jobs:
        assert await jobs.list(10) == []
        ids = []
        for wheel in wheels:
            ids.append(await jobs.submit(uri(wheel), wheel.name, False))
            await wait_for(jobs, ids[-1], ended)
        listed = await jobs.list(10)
        two = await jobs.list(2)
        newest = await jobs.status(ids[-1])
    assert [info.job_id for info in listed] == ids[::-1]
    assert [info.filename for info in listed] == [w.name for w in wheels[::-1]]
    assert {info.status for info in listed} == {JobStatus.FAILED}
    assert listed[0] == newest  # the same view of a job as its status
    assert [info.job_id for info in two] == ids[:0:-1]


async def test_cancelling_a_queued_job_means_it_never_runs(
    config: Config, built_wheels: dict[str, Path], stall: StallServer
) -> None:
    first, second = built_wheels[NODEPS], built_wheels[ONEDEP]
    async with backend_for(config) as jobs:
        first_id = await jobs.submit(uri(first), first.name, False)
        await wait_for(jobs, first_id, stalled)
        second_id = await jobs.submit(uri(second), second.name, False)
        await jobs.cancel(second_id)
        cancelled = await jobs.status(second_id)
        await jobs.cancel(second_id)  # already stopped: a no-op

        stall.release()
        await wait_for(jobs, first_id, ended)
        after = await jobs.status(second_id)

    assert cancelled.status is JobStatus.STOPPED
    assert cancelled.reason is not None
    assert cancelled.reason.startswith(f"{CANCELLED}: ")
    assert after == cancelled
    assert after.attempts == 0
    assert after.started_at is None
    assert leftovers(config, "pkg_onedep") == []


async def test_cancelling_a_running_install_stops_it_and_leaves_nothing_behind(
    config: Config, built_wheels: dict[str, Path]
) -> None:
    wheel = built_wheels[NODEPS]
    async with backend_for(config) as jobs:
        job_id = await jobs.submit(uri(wheel), wheel.name, False)
        await wait_for(jobs, job_id, stalled)
        await jobs.cancel(job_id)
        info = await wait_for(jobs, job_id, ended)
    assert info.status is JobStatus.STOPPED
    assert info.reason is not None
    assert info.reason.startswith(f"{CANCELLED}: ")
    assert info.attempts == 1
    assert leftovers(config, "pkg_nodeps") == []
    assert list((config.state_dir / "tmp").iterdir()) == []


async def test_cancelling_a_finished_or_failed_job_is_invalid_job_state(
    config: Config, tmp_path: Path
) -> None:
    bad = broken_wheel(tmp_path)
    async with backend_for(config) as jobs:
        job_id = await jobs.submit(uri(bad), bad.name, False)
        await wait_for(jobs, job_id, ended)
        with pytest.raises(HostError) as raised:
            await jobs.cancel(job_id)
    assert raised.value.code == INVALID_JOB_STATE
    assert raised.value.http_status == 400
    assert "failed" in raised.value.message


async def test_retry_runs_a_failed_job_again_under_the_same_id(
    config: Config, built_wheels: dict[str, Path], tmp_path: Path, stall: StallServer
) -> None:
    wheel = built_wheels[NODEPS]
    missing = tmp_path / "later" / wheel.name
    async with backend_for(config) as jobs:
        job_id = await jobs.submit(uri(missing), wheel.name, False)
        failed = await wait_for(jobs, job_id, ended)
        missing.parent.mkdir()
        shutil.copy(wheel, missing)

        assert await jobs.retry(job_id) == job_id
        running = await wait_for(jobs, job_id, stalled)
        with pytest.raises(HostError) as raised:
            await jobs.retry(job_id)
        stall.release()
        done = await wait_for(jobs, job_id, ended)

    assert failed.status is JobStatus.FAILED
    assert running.attempts == 2
    assert raised.value.code == INVALID_JOB_STATE
    assert done.status is JobStatus.FINISHED, done.reason
    assert done.attempts == 2
    assert done.reason is None
    assert done.enqueued_at >= failed.enqueued_at


async def test_a_duplicate_request_returns_the_active_job_and_installs_once(
    config: Config, built_wheels: dict[str, Path], stall: StallServer
) -> None:
    wheel = built_wheels[NODEPS]
    async with backend_for(config) as jobs:
        job_id = await jobs.submit(uri(wheel), wheel.name, False)
        queued_dup = await jobs.submit(uri(wheel), wheel.name, False)
        await wait_for(jobs, job_id, stalled)
        started_dup = await jobs.submit(uri(wheel), wheel.name, False)
        forced = await jobs.submit(uri(wheel), wheel.name, True)  # other arguments: a new job

        stall.release()
        done = await wait_for(jobs, job_id, ended)
        forced_done = await wait_for(jobs, forced, ended)
        again = await jobs.submit(uri(wheel), wheel.name, False)  # the first one has ended
        again_done = await wait_for(jobs, again, ended)

    assert queued_dup == job_id
    assert started_dup == job_id
    assert forced != job_id
    assert done.status is JobStatus.FINISHED, done.reason
    assert done.attempts == 1
    assert forced_done.status is JobStatus.FINISHED, forced_done.reason
    assert again not in {job_id, forced}
    assert again_done.status is JobStatus.FAILED
    assert again_done.reason is not None
    assert again_done.reason.startswith(f"{ALREADY_INSTALLED}: ")


async def test_a_finished_job_expires_after_result_ttl_s(
    tmp_path: Path, wheelhouse: Path, queue: dict[str, Any]
) -> None:
    config = write_config(
        tmp_path / "runtime.toml", tmp_path, wheelhouse=wheelhouse,
        queue=queue | {"result_ttl_s": 1.0},
    )  # fmt: skip
    bad = broken_wheel(tmp_path)
    async with backend_for(config) as jobs:
        job_id = await jobs.submit(uri(bad), bad.name, False)
        await wait_for(jobs, job_id, ended)
        with pytest.raises(HostError) as raised:
            await wait_for(jobs, job_id, lambda info: False, timeout_s=10)
        with pytest.raises(HostError) as retried:
            await jobs.retry(job_id)
    assert raised.value.code == JOB_NOT_FOUND
    assert raised.value.http_status == 404
    assert retried.value.code == JOB_NOT_FOUND


@pytest.mark.parametrize("job_id", ["0" * 32, "../../etc/passwd", "", "X" * 32])
async def test_an_unknown_job_id_is_job_not_found_everywhere(config: Config, job_id: str) -> None:
    async with backend_for(config) as jobs:
        for call in (jobs.status, jobs.cancel, jobs.retry):
            with pytest.raises(HostError) as raised:
                await call(job_id)
            assert raised.value.code == JOB_NOT_FOUND
        health = await jobs.health()
    assert health.ok, health.reason
