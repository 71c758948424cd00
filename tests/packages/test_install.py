"""Installing: a real venv per package version, built beside the current one and probed."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hiagent_host.errors import (
    ALREADY_INSTALLED,
    CANCELLED,
    INSTALL_FAILED,
    HostError,
)
from hiagent_host.packages import (
    INSTALLING,
    PHASES,
    EventKind,
    PackageEvent,
    PackageManager,
    PackageRecord,
)
from hiagent_host.packages.base_venv import BASE_DIR, MANIFEST
from tests.packages.support import (
    Loopback,
    build_plugin,
    describe,
    make_manager,
    member,
    rewrite_wheel,
    serve,
)

# Killing a silent installer must not take much longer than its idle timeout.
IDLE_SLACK_S = 10.0
RUN_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, built_wheels: dict[str, Path]
) -> tuple[PackageManager, PackageRecord, PackageRecord]:
    """One manager with pkg_nodeps and pkg_onedep installed, for tests that only read."""
    pm = make_manager(tmp_path_factory.mktemp("shared"), wheelhouse)
    nodeps, onedep = built_wheels["pkg_nodeps"], built_wheels["pkg_onedep"]
    return (
        pm,
        pm.install(nodeps.as_uri(), nodeps.name, force=False),
        pm.install(onedep.as_uri(), onedep.name, force=False),
    )


@pytest.fixture
def pm(tmp_path: Path, wheelhouse: Path) -> PackageManager:
    return make_manager(tmp_path / "data", wheelhouse)


def leftovers(pm: PackageManager) -> list[Path]:
    """Everything under venvs/, extensions/ and state/tmp/ (should be empty after a failure),
    but for a complete base venv (shared by every install, kept whatever the outcome)."""
    roots = (pm.config.paths.venvs_dir, pm.config.paths.extensions_dir, pm.layout.tmp_dir)
    bases = pm.config.paths.venvs_dir / BASE_DIR
    found = [p for root in roots if root.exists() for p in root.rglob("*")]
    return sorted(p for p in found if not _in_complete_base(p, bases))


def _in_complete_base(path: Path, bases: Path) -> bool:
    if path == bases:
        return True
    if not path.is_relative_to(bases):
        return False
    key = bases / path.relative_to(bases).parts[0]
    return (key / MANIFEST).is_file()


def run_python(python: Path, code: str) -> str:
    done = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True,
        timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    return done.stdout.strip()


def test_a_plugin_installs_into_a_venv_of_its_own_and_is_recorded(
    shared: tuple[PackageManager, PackageRecord, PackageRecord], built_wheels: dict[str, Path]
) -> None:
    pm, record, _ = shared
    wheel = built_wheels["pkg_nodeps"]
    assert (record.name, record.version, record.dir_name, record.version_dir) == (
        "pkg-nodeps", "1.0.0", "pkg_nodeps", "1.0.0",
    )  # fmt: skip
    assert (record.uri, record.filename) == (wheel.as_uri(), wheel.name)
    assert record.wheel_size == wheel.stat().st_size
    assert record.plugins == ["回声"]
    assert record.metadata["回声"]["name"] == "回声"
    assert record.installer == "uv"
    assert record.python_version.startswith("3.")
    assert record.disk_size_bytes > 0
    installed = {d.name for d in record.dependencies}
    assert {"hiagent-shim", "hiagent-plugin-sdk", "pkg-nodeps", "pydantic"} <= installed
    assert pm.get("pkg-nodeps", "1.0.0") == record
    record_file = pm.config.paths.extensions_dir / "pkg_nodeps" / "1.0.0" / "package.json"
    assert record_file.is_file()


def test_the_venv_path_is_a_normal_virtualenv_linked_to_the_current_build(
    shared: tuple[PackageManager, PackageRecord, PackageRecord],
) -> None:
    pm, record, _ = shared
    venv = Path(record.venv_path)
    assert venv == pm.config.paths.venvs_dir / "pkg_nodeps" / "1.0.0"
    assert venv.is_symlink()
    assert venv.resolve() == pm.venv_dir(record).resolve()
    assert (venv / "bin" / "activate").is_file()
    assert (venv / "pyvenv.cfg").is_file()
    assert (
        run_python(venv / "bin" / "python", "import pkg_nodeps; print(pkg_nodeps.BUILD)") == "one"
    )


def test_the_installed_venv_describes_its_plugins_with_its_own_interpreter(
    shared: tuple[PackageManager, PackageRecord, PackageRecord],
) -> None:
    pm, record, _ = shared
    doc = describe(pm.venv_python(record), record.name)
    assert doc["ok"] is True
    assert list(doc["metadata"]) == ["回声"]


def test_a_plugin_dependency_is_resolved_from_the_configured_sources(
    shared: tuple[PackageManager, PackageRecord, PackageRecord],
) -> None:
    _, _, record = shared
    assert record.plugins == ["OneDep", "OneDepTwin"]
    assert "six" in {d.name for d in record.dependencies}


def test_a_new_venv_reuses_the_bytecode_an_earlier_venv_compiled_from_the_same_files(
    shared: tuple[PackageManager, PackageRecord, PackageRecord],
) -> None:
    pm, first, second = shared
    (site_first,) = pm.venv_dir(first).glob("lib/python*/site-packages")
    (site_second,) = pm.venv_dir(second).glob("lib/python*/site-packages")
    compiled = sorted((site_first / "pydantic" / "__pycache__").glob("main.*.pyc"))
    assert compiled
    for pyc in compiled:
        twin = site_second / "pydantic" / "__pycache__" / pyc.name
        assert pyc.samefile(twin)


def test_an_install_reports_each_phase_in_order(
    pm: PackageManager, built_wheels: dict[str, Path]
) -> None:
    phases: list[str] = []
    wheel = built_wheels["pkg_nodeps"]
    pm.install(wheel.as_uri(), wheel.name, force=False, progress=phases.append)
    assert tuple(phases) == PHASES == (
        "downloading", "validating", "creating venv", "installing dependencies", "probing",
    )  # fmt: skip


def test_an_installed_version_is_not_reinstalled_without_force(
    shared: tuple[PackageManager, PackageRecord, PackageRecord], tmp_path: Path
) -> None:
    pm, record, _ = shared
    same_version = build_plugin(tmp_path, "PKG_NoDeps", "1.0", build="two")  # 1.0 == 1.0.0
    with pytest.raises(HostError) as caught:
        pm.install(same_version.as_uri(), same_version.name, force=False)
    assert (caught.value.code, caught.value.http_status) == (ALREADY_INSTALLED, 409)
    assert pm.get("pkg-nodeps", "1.0.0") == record


def test_force_replaces_the_build_atomically_and_removes_the_old_one(
    pm: PackageManager, tmp_path: Path
) -> None:
    events: list[PackageEvent] = []
    pm.add_listener(events.append)
    one = build_plugin(tmp_path, "pkg-swap", "2.0", build="one")
    two = build_plugin(tmp_path, "pkg-swap", "2.0", build="two")
    first = pm.install(one.as_uri(), one.name, force=False)
    second = pm.install(two.as_uri(), two.name, force=True)
    assert second.build != first.build
    assert not pm.venv_dir(first).exists()
    assert Path(second.venv_path).resolve() == pm.venv_dir(second).resolve()
    assert run_python(pm.venv_python(second), "import pkg_swap; print(pkg_swap.BUILD)") == "two"
    assert [(e.kind, e.name, e.version) for e in events] == [
        (EventKind.INSTALLED, "pkg-swap", "2.0"),
        (EventKind.REPLACED, "pkg-swap", "2.0"),
    ]
    assert events[1].record == second


def test_a_listener_that_fails_does_not_undo_the_install(
    pm: PackageManager, tmp_path: Path
) -> None:
    def broken(event: PackageEvent) -> None:
        raise RuntimeError("listener bug")

    pm.add_listener(broken)
    wheel = build_plugin(tmp_path, "pkg-listened", "1.0")
    record = pm.install(wheel.as_uri(), wheel.name, force=False)
    assert pm.get("pkg-listened", "1.0") == record


def test_a_dependency_no_source_has_fails_with_the_resolver_output_and_leaves_nothing(
    pm: PackageManager, tmp_path: Path
) -> None:
    wheel = build_plugin(tmp_path, "pkg-unresolvable", "1.0", dependencies=("hiagent-test-absent",))
    with pytest.raises(HostError) as caught:
        pm.install(wheel.as_uri(), wheel.name, force=False)
    assert (caught.value.code, caught.value.http_status) == (INSTALL_FAILED, 500)
    assert "hiagent-test-absent" in caught.value.data["output_tail"]
    assert leftovers(pm) == []


def test_a_plugin_that_fails_to_import_fails_the_install_naming_it(
    pm: PackageManager, built_wheels: dict[str, Path]
) -> None:
    wheel = built_wheels["pkg_importerror"]
    with pytest.raises(HostError) as caught:
        pm.install(wheel.as_uri(), wheel.name, force=False)
    assert caught.value.code == INSTALL_FAILED
    assert caught.value.data["plugin"] == "Broken"
    assert "hiagent_no_such_module" in caught.value.message
    assert leftovers(pm) == []


def test_an_offline_bundle_installs_its_dependencies_from_its_own_wheels(
    tmp_path: Path, wheelhouse: Path
) -> None:
    # The configured find-links lack pytz: only the bundle can provide it.
    local = tmp_path / "local-wheels"
    local.mkdir()
    for wheel in wheelhouse.glob("*.whl"):
        if not wheel.name.startswith("pytz"):
            shutil.copy(wheel, local)
    pm = make_manager(tmp_path / "data", local)
    plain = build_plugin(tmp_path, "pkg-bundle", "1.0", dependencies=("pytz",), imports=("pytz",))
    with pytest.raises(HostError) as caught:
        pm.install(plain.as_uri(), plain.name, force=False)
    assert caught.value.code == INSTALL_FAILED

    pytz = next(wheelhouse.glob("pytz-*.whl"))
    bundle = rewrite_wheel(
        plain, tmp_path / "bundle" / plain.name, fix_record=False,
        add=[(member(f"dependencies/{pytz.name}"), pytz.read_bytes())],
    )  # fmt: skip
    record = pm.install(bundle.as_uri(), bundle.name, force=False)
    assert record.offline_bundle
    assert "pytz" in {d.name for d in record.dependencies}
    site = run_python(
        pm.venv_python(record), "import pytz, os; print(os.path.dirname(pytz.__file__))"
    )
    assert not (Path(site).parent / "dependencies").exists()


def test_cancelling_an_install_removes_everything_it_started(
    pm: PackageManager, tmp_path: Path
) -> None:
    cancel = threading.Event()

    def cancel_at_install(phase: str) -> None:
        if phase == INSTALLING:
            cancel.set()

    wheel = build_plugin(tmp_path, "pkg-cancelled", "1.0")
    with pytest.raises(HostError) as caught:
        pm.install(
            wheel.as_uri(), wheel.name, force=False, progress=cancel_at_install, cancel=cancel
        )
    assert caught.value.code == CANCELLED
    assert leftovers(pm) == []


@pytest.fixture
def stalled_index() -> Iterator[Loopback]:
    yield from serve(Loopback(stall_all=True))


def test_an_installer_silent_for_longer_than_the_idle_timeout_is_killed(
    tmp_path: Path, wheelhouse: Path, stalled_index: Loopback
) -> None:
    pm = make_manager(
        tmp_path / "data", wheelhouse, no_index=False,
        index_url=stalled_index.url("/simple"), install_idle_timeout_s=1.0,
    )  # fmt: skip
    wheel = build_plugin(tmp_path, "pkg-stalled", "1.0", dependencies=("hiagent-test-absent",))
    started = time.monotonic()
    with pytest.raises(HostError) as caught:
        pm.install(wheel.as_uri(), wheel.name, force=False)
    assert caught.value.code == INSTALL_FAILED
    assert stalled_index.requested.is_set()
    assert "printed nothing" in caught.value.data["reason"]
    assert time.monotonic() - started < 1.0 + IDLE_SLACK_S
    assert leftovers(pm) == []


def test_without_uv_the_pip_fallback_builds_the_same_kind_of_venv(
    tmp_path: Path, wheelhouse: Path, built_wheels: dict[str, Path]
) -> None:
    pm = make_manager(tmp_path / "data", wheelhouse, installer="pip")
    wheel = built_wheels["pkg_onedep"]
    record = pm.install(wheel.as_uri(), wheel.name, force=False)
    assert record.installer == "pip"
    assert record.plugins == ["OneDep", "OneDepTwin"]
    assert "six" in {d.name for d in record.dependencies}
    assert (Path(record.venv_path) / "bin" / "activate").is_file()
