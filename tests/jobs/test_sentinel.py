"""The redis backend on a Sentinel-managed master: installs queued across a failover finish."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from hiagent_host.errors import QUEUE_UNAVAILABLE, HostError
from hiagent_host.jobs import JobBackend, JobInfo, JobStatus, make_backend
from hiagent_host.packages import PackageManager
from tests.jobs import helpers
from tests.jobs.sentinel import SentinelSet

pytestmark = pytest.mark.anyio

WHEELS = ("pkg_nodeps", "pkg_onedep", "echo")
CONNECT_TIMEOUT_S = 1.0


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    servers = SentinelSet(tmp_path / "redis")
    servers.dir.mkdir()
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


async def wait_through_failover(
    jobs: JobBackend, job_id: str, until: Callable[[JobInfo], bool]
) -> JobInfo:
    """As `wait_for`, but a QueueUnavailable answer (the failover under way) is waited out."""
    with anyio.fail_after(helpers.JOB_WAIT_S):
        while True:
            try:
                info = await jobs.status(job_id)
            except HostError as exc:
                if exc.code != QUEUE_UNAVAILABLE:
                    raise
            else:
                if until(info):
                    return info
            await anyio.sleep(helpers.POLL_S)


async def test_installs_queued_when_the_master_fails_over_finish_on_the_new_master(
    tmp_path: Path,
    wheelhouse: Path,
    built_wheels: dict[str, Path],
    stall: helpers.StallServer,
    sentinel_set: SentinelSet,
    start_worker: Callable[[Path], helpers.WorkerProcess],
) -> None:
    config = helpers.write_config(
        tmp_path / "runtime.toml",
        tmp_path,
        wheelhouse=wheelhouse,
        find_links=[stall.url],
        queue={
            "backend": "redis",
            "redis_url": sentinel_set.url,
            "worker_concurrency": 1,
            "connect_timeout_s": CONNECT_TIMEOUT_S,
        },
    )
    worker = start_worker(Path(config.source))
    async with make_backend(config, PackageManager(config), with_worker=False) as jobs:
        # One install runs (stalled in the resolver), then the others are queued behind it:
        # submitted together, the worker could take them in any order (arq orders jobs by
        # their enqueue time in milliseconds), and one that needs no page may finish first.
        first = built_wheels[WHEELS[0]]
        ids = [await jobs.submit(first.as_uri(), first.name, False)]
        running = await helpers.wait_for(jobs, ids[0], helpers.stalled)
        ids += [
            await jobs.submit(built_wheels[name].as_uri(), built_wheels[name].name, False)
            for name in WHEELS[1:]
        ]
        queued = [await jobs.status(job_id) for job_id in ids[1:]]

        sentinel_set.replicate_now()
        sentinel_set.stop_master()
        await anyio.to_thread.run_sync(sentinel_set.wait_promoted)
        stall.release()
        done = [await wait_through_failover(jobs, job_id, helpers.ended) for job_id in ids]
    assert running.status is JobStatus.STARTED
    assert [info.status for info in queued] == [JobStatus.QUEUED, JobStatus.QUEUED]
    assert [info.status for info in done] == [JobStatus.FINISHED] * 3, (
        [info.reason for info in done],
        worker.log(),
    )
    assert worker.proc.poll() is None, worker.log()
    assert sentinel_set.master_address() == ("127.0.0.1", sentinel_set.replica_port)
