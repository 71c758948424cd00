"""The redis backend with separate worker processes, and Redis failing under it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from hiagent_host.config import Config
from hiagent_host.errors import INVALID_JOB_STATE, JOB_NOT_FOUND, QUEUE_UNAVAILABLE, HostError
from hiagent_host.jobs import JobBackend, JobStatus, QueueHealth, make_backend
from hiagent_host.jobs.worker import WORKER_HEARTBEAT_S
from hiagent_host.packages import PackageManager
from tests.jobs.helpers import (
    RedisServer,
    StallServer,
    WorkerProcess,
    ended,
    stalled,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.anyio

NODEPS = "pkg_nodeps"
ONEDEP = "pkg_onedep"
CONNECT_TIMEOUT_S = 1.0
# What "promptly" means for a call while Redis is down or hung.
PROMPT_S = CONNECT_TIMEOUT_S + 0.5
# Workers report in within a heartbeat or two (and a Redis reconnect backoff).
WORKERS_READY_S = 3 * WORKER_HEARTBEAT_S + 30

StartWorker = Callable[[Path], WorkerProcess]


def redis_config(
    path: Path, root: Path, wheelhouse: Path, stall: StallServer, redis: RedisServer,
    **queue: Any,
) -> Config:  # fmt: skip
    settings = {
        "backend": "redis",
        "redis_url": redis.url,
        "worker_concurrency": 1,
        "connect_timeout_s": CONNECT_TIMEOUT_S,
    }
    return write_config(
        path, root, wheelhouse=wheelhouse, find_links=[stall.url], queue=settings | queue
    )


@pytest.fixture
def config(tmp_path: Path, wheelhouse: Path, stall: StallServer, redis: RedisServer) -> Config:
    return redis_config(tmp_path / "runtime.toml", tmp_path, wheelhouse, stall, redis)


def api(config: Config) -> JobBackend:
    """The API side only: no worker in this process."""
    return make_backend(config, PackageManager(config), with_worker=False)


async def wait_workers(jobs: JobBackend, workers: list[WorkerProcess]) -> None:
    """Until all `workers` have reported in; their logs in the failure if they do not."""
    try:
        await wait_health(jobs, lambda h: h.workers == len(workers))
    except TimeoutError:
        logs = "\n".join(f"--- worker {w.pid} (exit {w.proc.poll()}):\n{w.log()}" for w in workers)
        pytest.fail(f"workers did not report in:\n{logs}")


async def wait_health(
    jobs: JobBackend, until: Callable[[QueueHealth], bool], timeout_s: float = WORKERS_READY_S
) -> QueueHealth:
    with anyio.fail_after(timeout_s):
        while True:
            if until(health := await jobs.health()):
                return health
            await anyio.sleep(0.05)


async def test_two_worker_processes_share_one_redis_with_the_api_in_this_process(
    config: Config, built_wheels: dict[str, Path], stall: StallServer, start_worker: StartWorker
) -> None:
    first, second = built_wheels[NODEPS], built_wheels[ONEDEP]
    workers = [start_worker(Path(config.source)) for _ in range(2)]
    async with api(config) as jobs:
        await wait_workers(jobs, workers)
        a = await jobs.submit(first.as_uri(), first.name, False)
        b = await jobs.submit(second.as_uri(), second.name, False)
        # Each worker runs one install at a time: both stalled at once means both took one.
        await wait_for(jobs, a, stalled)
        await wait_for(jobs, b, stalled)
        health = await jobs.health()
        stall.release()
        done = [await wait_for(jobs, job, ended) for job in (a, b)]
    assert health.ok
    assert health.depth == 2
    assert [info.status for info in done] == [JobStatus.FINISHED, JobStatus.FINISHED]


async def test_a_queue_without_workers_is_unhealthy_and_keeps_its_jobs_queued(
    config: Config, built_wheels: dict[str, Path]
) -> None:
    wheel = built_wheels[NODEPS]
    async with api(config) as jobs:
        job_id = await jobs.submit(wheel.as_uri(), wheel.name, False)
        health = await jobs.health()
        info = await jobs.status(job_id)
        with pytest.raises(HostError) as raised:
            await jobs.retry(job_id)
        await jobs.cancel(job_id)
        stopped = await jobs.status(job_id)
    assert not health.ok
    assert health.workers == 0
    assert health.depth == 1
    assert health.reason is not None
    assert "worker" in health.reason
    assert info.status is JobStatus.QUEUED
    assert raised.value.code == INVALID_JOB_STATE
    assert stopped.status is JobStatus.STOPPED
    assert stopped.attempts == 0


async def expect_unavailable(call: Callable[[], Any]) -> None:
    started = time.monotonic()
    with pytest.raises(HostError) as raised:
        await call()
    assert raised.value.code == QUEUE_UNAVAILABLE
    assert raised.value.http_status == 503
    assert time.monotonic() - started < PROMPT_S


async def test_redis_killed_and_restarted_means_prompt_503s_then_service_resumes_by_itself(
    config: Config,
    built_wheels: dict[str, Path],
    stall: StallServer,
    redis: RedisServer,
    start_worker: StartWorker,
) -> None:
    wheel = built_wheels[NODEPS]
    stall.release()
    worker = start_worker(Path(config.source))
    async with api(config) as jobs:
        await wait_workers(jobs, [worker])
        job_id = await jobs.submit(wheel.as_uri(), wheel.name, False)

        redis.kill()
        await expect_unavailable(lambda: jobs.submit(wheel.as_uri(), wheel.name, True))
        await expect_unavailable(lambda: jobs.status(job_id))
        await expect_unavailable(lambda: jobs.cancel(job_id))
        await expect_unavailable(lambda: jobs.retry(job_id))
        started = time.monotonic()
        down = await jobs.health()
        health_s = time.monotonic() - started

        redis.start()  # same port, empty: what it held is gone
        up = await wait_health(jobs, lambda h: h.ok)
        with pytest.raises(HostError) as lost:
            await jobs.status(job_id)
        again = await jobs.submit(wheel.as_uri(), wheel.name, True)
        done = await wait_for(jobs, again, ended)
    assert worker.proc.poll() is None, worker.log()
    assert not down.ok
    assert down.reason is not None
    assert down.reason.startswith(f"{QUEUE_UNAVAILABLE}: ")
    assert health_s < PROMPT_S
    assert up.workers == 1
    assert lost.value.code == JOB_NOT_FOUND
    assert done.status is JobStatus.FINISHED, done.reason


async def test_a_hung_redis_answers_queue_unavailable_within_connect_timeout_s(
    config: Config, redis: RedisServer
) -> None:
    async with api(config) as jobs:
        await jobs.health()
        redis.pause()
        try:
            await expect_unavailable(lambda: jobs.status("0" * 32))
            name = "a-1.0-py3-none-any.whl"
            await expect_unavailable(lambda: jobs.submit(f"file:///x/{name}", name, False))
        finally:
            redis.resume()
        with pytest.raises(HostError) as raised:
            await jobs.status("0" * 32)
    assert raised.value.code == JOB_NOT_FOUND


async def test_a_stopped_worker_hands_its_running_install_back_to_the_queue(
    config: Config, built_wheels: dict[str, Path], stall: StallServer, start_worker: StartWorker
) -> None:
    wheel = built_wheels[NODEPS]
    first = start_worker(Path(config.source))
    async with api(config) as jobs:
        await wait_workers(jobs, [first])
        job_id = await jobs.submit(wheel.as_uri(), wheel.name, False)
        await wait_for(jobs, job_id, stalled)
        returncode = await anyio.to_thread.run_sync(first.stop)
        requeued = await jobs.status(job_id)
        start_worker(Path(config.source))
        stall.release()
        done = await wait_for(jobs, job_id, ended)
    assert returncode == 0, first.log()
    assert requeued.status is JobStatus.QUEUED
    assert requeued.attempts == 1
    assert done.status is JobStatus.FINISHED, done.reason
    assert done.attempts == 2


async def test_a_worker_killed_mid_install_leaves_nothing_half_installed_and_the_job_reruns(
    tmp_path: Path,
    wheelhouse: Path,
    built_wheels: dict[str, Path],
    stall: StallServer,
    redis: RedisServer,
    start_worker: StartWorker,
) -> None:
    wheel = built_wheels[NODEPS]
    # The victim's short job timeout makes arq's in-progress key (job timeout + 15 s) expire
    # soon after the kill; the survivor uses the same data directories.
    victim_config = redis_config(
        tmp_path / "victim.toml", tmp_path, wheelhouse, stall, redis, job_timeout_s=4.0
    )
    config = redis_config(tmp_path / "runtime.toml", tmp_path, wheelhouse, stall, redis)
    victim = start_worker(Path(victim_config.source))
    async with api(config) as jobs:
        await wait_workers(jobs, [victim])
        job_id = await jobs.submit(wheel.as_uri(), wheel.name, False)
        await wait_for(jobs, job_id, stalled)
        victim.sigkill()
        orphaned = await jobs.status(job_id)
        # Killed before the commit: not installed at all, neither record nor venv link.
        assert not (config.extensions_dir / "pkg_nodeps" / "1.0.0").exists()
        assert not (config.venvs_dir / "pkg_nodeps" / "1.0.0").exists()

        stall.release()
        start_worker(Path(config.source))
        done = await wait_for(jobs, job_id, ended, timeout_s=60)
    assert orphaned.status is JobStatus.STARTED  # arq cannot know yet that its worker died
    assert done.status is JobStatus.FINISHED, done.reason
    assert done.attempts == 2
    installed = PackageManager(config).get("pkg-nodeps", "1.0.0")
    assert PackageManager(config).venv_python(installed).is_file()


async def test_a_server_with_an_inprocess_worker_starts_with_redis_down_and_joins_when_it_returns(
    config: Config, built_wheels: dict[str, Path], stall: StallServer, redis: RedisServer
) -> None:
    wheel = built_wheels[NODEPS]
    stall.release()
    redis.kill()
    started = time.monotonic()
    async with make_backend(config, PackageManager(config), with_worker=True) as jobs:
        enter_s = time.monotonic() - started
        down = await jobs.health()
        redis.start()
        up = await wait_health(jobs, lambda h: h.ok)
        job_id = await jobs.submit(wheel.as_uri(), wheel.name, False)
        done = await wait_for(jobs, job_id, ended)
    assert enter_s < PROMPT_S
    assert not down.ok
    assert up.workers == 1
    assert done.status is JobStatus.FINISHED, done.reason
