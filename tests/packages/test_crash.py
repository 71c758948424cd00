"""A host killed in the middle of a replacing install: the old version keeps working."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hiagent_host.packages import PackageManager
from tests.packages.support import (
    WAIT_S,
    Loopback,
    Route,
    build_plugin,
    describe,
    make_manager,
    processes_mentioning,
    serve,
    subprocess_env,
    wait_until,
    write_runtime_toml,
)


@pytest.fixture
def stalled_index() -> Iterator[Loopback]:
    """An index that knows nothing (404) and stalls on the one project only it could have."""
    yield from serve(Loopback(routes={"/simple/hiagent-test-absent/": Route(404, stall=True)}))


def test_a_kill_during_a_forced_install_leaves_the_old_version_serving_and_recover_cleans_up(
    tmp_path: Path, wheelhouse: Path, stalled_index: Loopback
) -> None:
    root = tmp_path / "data"
    pm: PackageManager = make_manager(root, wheelhouse)
    old_wheel = build_plugin(tmp_path, "pkg-crash", "1.0", build="one")
    old = pm.install(old_wheel.as_uri(), old_wheel.name, force=False)

    # The replacement needs a dependency only the (stalling) index could have, so the
    # installer is certainly running when the index sees its first request.
    new_wheel = build_plugin(
        tmp_path, "pkg-crash", "1.0", build="two", dependencies=("hiagent-test-absent",)
    )
    config = write_runtime_toml(
        tmp_path / "runtime.toml", root, wheelhouse,
        no_index=False, index_url=stalled_index.url("/simple"),
    )  # fmt: skip
    host = subprocess.Popen(
        [sys.executable, "-m", "hiagent_host", "--config", str(config), "install",
         str(new_wheel), "--force"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=subprocess_env(),
    )  # fmt: skip
    with host:
        wait_until(
            lambda: stalled_index.requested.is_set() or host.poll() is not None,
            "the installer to ask the index",
        )
        assert host.returncode is None, host.communicate()[1]
        venvs = root / "venvs" / "pkg_crash"
        new_builds = [p for p in venvs.iterdir() if p.name not in {old.build, "1.0"}]
        assert len(new_builds) == 1
        host.send_signal(signal.SIGKILL)
        assert host.wait(timeout=WAIT_S) == -signal.SIGKILL

    # The orphaned installer gets its answer (404) and exits on its own.
    stalled_index.release.set()
    wait_until(lambda: not processes_mentioning(str(new_builds[0])), "the orphaned installer")

    assert pm.get("pkg-crash", "1.0") == old
    assert Path(old.venv_path).resolve() == pm.venv_dir(old).resolve()
    assert describe(pm.venv_python(old), "pkg-crash")["ok"] is True

    removed = pm.recover()
    assert new_builds[0] in removed
    assert sorted(p.name for p in venvs.iterdir()) == sorted([old.build, "1.0"])
    assert list(pm.layout.tmp_dir.iterdir()) == []
    assert pm.list() == [old]
