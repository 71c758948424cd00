"""Reading, deleting and recovering installed versions; locks and concurrent installs."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hiagent_host.errors import (
    ALREADY_INSTALLED,
    CANCELLED,
    INVALID_REQUEST,
    PACKAGE_NOT_FOUND,
    HostError,
)
from hiagent_host.packages import (
    VALIDATING,
    EventKind,
    PackageEvent,
    PackageManager,
    PackageRecord,
)
from tests.packages.support import build_plugin, describe, make_manager, subprocess_env

LOCK_HOLDER_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, built_wheels: dict[str, Path]
) -> tuple[PackageManager, PackageRecord]:
    """One manager with pkg_nodeps installed, for tests that only read."""
    pm = make_manager(tmp_path_factory.mktemp("lifecycle"), wheelhouse)
    wheel = built_wheels["pkg_nodeps"]
    return pm, pm.install(wheel.as_uri(), wheel.name, force=False)


@pytest.fixture
def pm(tmp_path: Path, wheelhouse: Path) -> PackageManager:
    return make_manager(tmp_path / "data", wheelhouse)


def install(pm: PackageManager, tmp_path: Path, name: str, version: str) -> PackageRecord:
    wheel = build_plugin(tmp_path, name, version)
    return pm.install(wheel.as_uri(), wheel.name, force=False)


# ---- reading -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("pkg-nodeps", "1.0.0"),
        ("pkg_nodeps", "1.0"),
        ("PKG.NoDeps", "1"),
        ("Pkg__Nodeps", "1.0.0.0"),
    ],
)
def test_any_pep503_spelling_and_pep440_equal_version_finds_the_package(
    shared: tuple[PackageManager, PackageRecord], name: str, version: str
) -> None:
    pm, record = shared
    found = pm.get(name, version)
    assert found == record
    assert (found.name, found.version) == ("pkg-nodeps", "1.0.0")


@pytest.mark.parametrize(("name", "version"), [("pkg-nodeps", "1.0.1"), ("pkg-other", "1.0.0")])
def test_a_version_that_is_not_installed_is_not_found(
    shared: tuple[PackageManager, PackageRecord], name: str, version: str
) -> None:
    pm, _ = shared
    with pytest.raises(HostError) as caught:
        pm.get(name, version)
    assert (caught.value.code, caught.value.http_status) == (PACKAGE_NOT_FOUND, 404)


def test_the_list_holds_every_installed_version(
    shared: tuple[PackageManager, PackageRecord],
) -> None:
    pm, record = shared
    assert pm.list() == [record]


def test_data_and_log_paths_are_per_package_version_under_the_state_dir(
    shared: tuple[PackageManager, PackageRecord],
) -> None:
    pm, record = shared
    state = pm.config.paths.state_dir
    assert pm.data_dir(record) == state / "data" / "pkg_nodeps" / "1.0.0"
    assert pm.data_dir(record).is_dir()
    assert pm.log_path("PKG_nodeps", "1.0") == state / "logs" / "pkg_nodeps" / "1.0.0.log"
    assert pm.log_path("pkg-nodeps", "1.0").parent.is_dir()


# ---- deleting ----------------------------------------------------------------------------


def test_delete_removes_the_record_venv_and_data_and_is_idempotent(
    pm: PackageManager, tmp_path: Path
) -> None:
    events: list[PackageEvent] = []
    pm.add_listener(events.append)
    record = install(pm, tmp_path, "pkg-doomed", "3.1")
    data = pm.data_dir(record)
    (data / "state.txt").write_text("plugin data")
    assert pm.delete("PKG_Doomed", "3.1.0") is True
    assert pm.list() == []
    assert not Path(record.venv_path).exists()
    assert not Path(record.venv_path).is_symlink()
    assert not pm.venv_dir(record).exists()
    assert not data.exists()
    assert [e.kind for e in events] == [EventKind.INSTALLED, EventKind.DELETED]
    assert pm.delete("pkg-doomed", "3.1") is False
    with pytest.raises(HostError) as caught:
        pm.get("pkg-doomed", "3.1")
    assert caught.value.code == PACKAGE_NOT_FOUND


def test_deleting_one_version_keeps_the_others(pm: PackageManager, tmp_path: Path) -> None:
    one = install(pm, tmp_path, "pkg-versions", "1.0")
    two = install(pm, tmp_path, "pkg-versions", "2.0")
    assert pm.delete("pkg-versions", "1.0")
    assert pm.list() == [two]
    assert not pm.venv_dir(one).exists()
    assert describe(pm.venv_python(two), "pkg-versions")["ok"] is True


@pytest.mark.parametrize(
    ("name", "version"),
    [("../outside", "1.0"), ("/etc", "1.0"), ("a/../../b", "1.0"), ("ok", "../../x"), ("", "1")],
)
def test_names_that_are_no_package_names_are_refused_without_touching_anything(
    pm: PackageManager, tmp_path: Path, name: str, version: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    for call in (pm.delete, pm.get):
        with pytest.raises(HostError) as caught:
            call(name, version)
        assert caught.value.code == INVALID_REQUEST
    assert (outside / "precious").read_text() == "keep me"


def test_a_package_directory_that_links_outside_is_never_followed(
    pm: PackageManager, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    (outside / "1.0").mkdir(parents=True)
    (outside / "1.0" / "package.json").write_text("{}")
    for root in (pm.config.paths.extensions_dir, pm.config.paths.venvs_dir):
        root.mkdir(parents=True, exist_ok=True)
        (root / "evil").symlink_to(outside)
    with pytest.raises(HostError) as caught:
        pm.delete("evil", "1.0")
    assert caught.value.code == INVALID_REQUEST
    pm.recover()
    assert pm.list() == []
    assert (outside / "1.0" / "package.json").read_text() == "{}"


# ---- recovering --------------------------------------------------------------------------


def test_recover_removes_leftovers_and_keeps_what_records_name(
    pm: PackageManager, tmp_path: Path
) -> None:
    record = install(pm, tmp_path, "pkg-kept", "1.0")
    venvs = pm.config.paths.venvs_dir / "pkg_kept"
    records = pm.config.paths.extensions_dir / "pkg_kept"
    leftovers = [
        venvs / ".1.0-deadbeef",  # an interrupted build of the same version
        venvs / ".trash-0123",  # something renamed aside to be removed
        records / ".trash-4567",  # a record renamed aside by an interrupted delete
        pm.config.paths.venvs_dir / "pkg_gone" / ".2.0-cafe",  # a build whose record never came
        pm.config.paths.extensions_dir / "pkg_novenv" / "1.0",  # a record whose venv is gone
        pm.layout.tmp_dir / "999999999-scratch",  # scratch space of a dead process
    ]
    for path in leftovers:
        path.mkdir(parents=True)
    (pm.config.paths.extensions_dir / "pkg_novenv" / "1.0" / "package.json").write_bytes(
        pm.config.paths.extensions_dir.joinpath("pkg_kept", "1.0", "package.json").read_bytes()
    )
    (pm.config.paths.venvs_dir / "pkg_gone" / "2.0").symlink_to(".2.0-cafe")
    (venvs / "1.0").unlink()  # a kill after the record, before the link moved
    (venvs / "1.0").symlink_to(".1.0-deadbeef")
    removed = pm.recover()
    for path in leftovers:
        assert not path.exists(), path
    assert set(leftovers) <= set(removed)
    assert not (pm.config.paths.venvs_dir / "pkg_gone").exists()
    assert sorted(p.name for p in venvs.iterdir()) == sorted([record.build, "1.0"])
    assert (venvs / "1.0").resolve() == pm.venv_dir(record).resolve()
    assert pm.list() == [record]


def test_recover_leaves_a_version_alone_whose_record_it_cannot_read(
    pm: PackageManager, tmp_path: Path
) -> None:
    record = install(pm, tmp_path, "pkg-future", "1.0")
    record_file = pm.config.paths.extensions_dir / "pkg_future" / "1.0" / "package.json"
    record_file.write_text('{"schema_version": 99}')
    assert pm.recover() == []
    assert pm.venv_dir(record).exists()
    assert pm.list() == []


# ---- locks and concurrency ---------------------------------------------------------------


def test_concurrent_installs_of_one_version_are_serialised(
    pm: PackageManager, tmp_path: Path
) -> None:
    wheel = build_plugin(tmp_path, "pkg-race", "1.0")
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(pm.install, wheel.as_uri(), wheel.name, force=False) for _ in range(2)
        ]
    outcomes = []
    for future in futures:
        try:
            outcomes.append(future.result().name)
        except HostError as exc:
            outcomes.append(exc.code)
    assert sorted(outcomes) == sorted(["pkg-race", ALREADY_INSTALLED])
    assert len(list((pm.config.paths.venvs_dir / "pkg_race").iterdir())) == 2  # a build, a link


def test_concurrent_forced_installs_of_one_version_both_succeed_one_after_the_other(
    pm: PackageManager, tmp_path: Path
) -> None:
    one = build_plugin(tmp_path, "pkg-forced", "1.0", build="one")
    two = build_plugin(tmp_path, "pkg-forced", "1.0", build="two")
    with ThreadPoolExecutor(2) as pool:
        records = list(pool.map(lambda w: pm.install(w.as_uri(), w.name, force=True), [one, two]))
    current = pm.get("pkg-forced", "1.0")
    assert current in records
    assert sorted(p.name for p in (pm.config.paths.venvs_dir / "pkg_forced").iterdir()) == sorted(
        ["1.0", current.build]
    )


def test_different_packages_install_in_parallel(pm: PackageManager, tmp_path: Path) -> None:
    wheels = [build_plugin(tmp_path, f"pkg-parallel-{i}", "1.0") for i in range(2)]
    with ThreadPoolExecutor(2) as pool:
        records = list(pool.map(lambda w: pm.install(w.as_uri(), w.name, force=False), wheels))
    assert sorted(r.name for r in pm.list()) == ["pkg-parallel-0", "pkg-parallel-1"]
    assert all(describe(pm.venv_python(r), r.name)["ok"] for r in records)


def test_an_install_waits_for_the_lock_another_process_holds(
    pm: PackageManager, tmp_path: Path
) -> None:
    wheel = build_plugin(tmp_path, "pkg-locked", "1.0")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(pm.layout.lock_path("pkg_locked"))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=subprocess_env(),
    )  # fmt: skip
    assert holder.stdin is not None
    assert holder.stdout is not None
    with holder, holder.stdin, holder.stdout:
        assert holder.stdout.readline().strip() == "held"
        phases: list[str] = []
        cancel = threading.Event()

        def note(phase: str) -> None:
            phases.append(phase)
            if phase == VALIDATING:
                cancel.set()  # what comes next is the wait for the lock

        with pytest.raises(HostError) as caught:
            pm.install(wheel.as_uri(), wheel.name, force=False, progress=note, cancel=cancel)
        assert caught.value.code == CANCELLED
        assert phases == ["downloading", VALIDATING]
        holder.stdin.write("release\n")
        holder.stdin.flush()
        assert holder.wait(timeout=LOCK_HOLDER_TIMEOUT_S) == 0
    assert pm.install(wheel.as_uri(), wheel.name, force=False).name == "pkg-locked"


HOLD_LOCK = """
import sys
from pathlib import Path
from hiagent_host.storage import FileLock

lock = FileLock(Path(sys.argv[1]))
lock.acquire()
print("held", flush=True)
sys.stdin.readline()
"""
