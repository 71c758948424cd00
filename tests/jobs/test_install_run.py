"""Running one install as a job: its steps, download bytes included, reach the job's store."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from hiagent_host.jobs.install_run import run_install
from hiagent_host.jobs.model import JobSpec, JobStatus, Step
from hiagent_host.packages import DOWNLOADING, PHASES, PackageManager
from tests.jobs.helpers import write_config

pytestmark = pytest.mark.anyio

# A small fixture wheel installs in seconds; this bounds a loaded machine.
INSTALL_TIMEOUT_S = 300.0


async def test_an_install_reports_the_bytes_it_downloaded_and_then_each_phase(
    tmp_path: Path, wheelhouse: Path, built_wheels: dict[str, Path]
) -> None:
    config = write_config(tmp_path / "runtime.toml", tmp_path, wheelhouse=wheelhouse)
    wheel = built_wheels["pkg_nodeps"]
    steps: list[Step] = []

    async def record(step: Step) -> None:
        steps.append(step)

    outcome = await run_install(
        PackageManager(config),
        JobSpec(uri=wheel.as_uri(), filename=wheel.name, force=False),
        cancel=threading.Event(),
        timeout_s=INSTALL_TIMEOUT_S,
        on_phase=record,
    )

    assert outcome.status is JobStatus.FINISHED, outcome.reason
    downloads = [s for s in steps if s.downloaded_bytes is not None]
    size = wheel.stat().st_size
    assert downloads, steps
    assert {s.phase for s in downloads} == {DOWNLOADING}
    assert downloads[-1] == Step(phase=DOWNLOADING, downloaded_bytes=size, download_size_bytes=size)
    assert [s.phase for s in steps if s.downloaded_bytes is None] == list(PHASES)
