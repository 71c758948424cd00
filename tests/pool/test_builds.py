"""Builds with a packages store: materialised once however many calls wait, leased while used."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import msgspec
import pytest

from hiagent_host.config import StoreConfig
from hiagent_host.packages import PackageManager
from hiagent_host.pool import Pool
from hiagent_host.storage import FileLock
from tests.cluster.support import PLUGIN, timed_plugin
from tests.support.configs import offline_config
from tests.support.s3 import PackagesS3

pytestmark = pytest.mark.anyio

NAME = "hiagent-plugin-pooled"
CALLS = 8
# The first calls wait for one venv build, probe and process start on a loaded machine.
CALLS_WAIT_S = 120


def _node(root: Path, wheelhouse: Path, s3: PackagesS3) -> PackageManager:
    config = offline_config(root, wheelhouse)
    store = msgspec.convert(s3.store_settings(), StoreConfig)
    return PackageManager(msgspec.structs.replace(config, store=store))


async def test_concurrent_first_calls_materialise_once_and_lease_the_build(
    tmp_path: Path, wheelhouse: Path, packages_s3: PackagesS3, caplog: pytest.LogCaptureFixture
) -> None:
    wheel = timed_plugin(tmp_path, NAME, "1.0", "pooled")
    a = _node(tmp_path / "a", wheelhouse, packages_s3)
    installed = a.install(wheel.as_uri(), wheel.name, force=False)
    b = _node(tmp_path / "b", wheelhouse, packages_s3)
    lease = FileLock(b.layout.lease_path(installed.dir_name, installed.build))
    answers: list[str] = []
    caplog.set_level(logging.INFO, logger="hiagent_host.packages")
    async with Pool(b.config, b) as pool:

        async def one() -> None:
            answers.append(await pool.run_tool(NAME, "1.0", PLUGIN, "build", {}, None))

        with anyio.fail_after(CALLS_WAIT_S):
            async with anyio.create_task_group() as tg:
                for _ in range(CALLS):
                    tg.start_soon(one)
        assert not lease.acquire(timeout_s=0)  # the pool's child runs from the build
    assert answers == ["pooled"] * CALLS
    built = [r for r in caplog.records if r.getMessage().startswith("materialised ")]
    assert len(built) == 1
    assert lease.acquire(timeout_s=0)  # let go with the last child; the build is current
    lease.release()
    assert b.venv_dir(installed).is_dir()
