"""Validating a wheel before anything is installed: every problem found, all reported at once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hiagent_host.errors import INVALID_PACKAGE, INVALID_REQUEST, HostError
from hiagent_host.packages import PackageManager
from tests.packages.support import dist_info, make_manager, member, rewrite_wheel


@pytest.fixture
def pm(tmp_path: Path, wheelhouse: Path) -> PackageManager:
    return make_manager(tmp_path / "data", wheelhouse)


@pytest.fixture
def good(built_wheels: dict[str, Path]) -> Path:
    return built_wheels["pkg_nodeps"]


def problems_of(pm: PackageManager, wheel: Path, filename: str | None = None) -> list[str]:
    with pytest.raises(HostError) as caught:
        pm.read_metadata(wheel.as_uri(), filename or wheel.name)
    assert caught.value.code == INVALID_PACKAGE
    assert caught.value.http_status == 400
    problems: list[str] = caught.value.data["problems"]
    return problems


def test_a_valid_wheel_reads_as_its_metadata_name_version_and_entry_point_names(
    pm: PackageManager, good: Path
) -> None:
    summary = pm.read_metadata(good.as_uri(), good.name)
    assert (summary.name, summary.version, summary.plugins) == ("pkg-nodeps", "1.0.0", ["回声"])
    assert summary.brief_with_entry() == {
        "name": "pkg-nodeps",
        "version": "1.0.0",
        "uri": good.as_uri(),
        "filename": good.name,
        "plugins": ["回声"],
    }


def test_reading_metadata_installs_nothing(pm: PackageManager, good: Path) -> None:
    pm.read_metadata(good.as_uri(), good.name)
    assert pm.list() == []
    assert not pm.config.paths.venvs_dir.exists() or not any(pm.config.paths.venvs_dir.iterdir())


def test_a_file_that_is_not_a_zip_is_an_invalid_package(pm: PackageManager, tmp_path: Path) -> None:
    fake = tmp_path / "pkg_nodeps-1.0.0-py3-none-any.whl"
    fake.write_bytes(b"#!/bin/sh\necho this is not a wheel\n")
    assert any("not a zip" in p for p in problems_of(pm, fake))


@pytest.mark.parametrize(
    ("name", "word"),
    [
        ("../../evil.py", "escapes"),
        ("pkg_nodeps/../../evil.py", "escapes"),
        ("/etc/evil", "absolute"),
    ],
)
def test_a_member_that_would_land_outside_the_target_is_refused(
    pm: PackageManager, good: Path, tmp_path: Path, name: str, word: str
) -> None:
    bad = rewrite_wheel(good, tmp_path / good.name, add=[(member(name), b"x")])
    assert any(name in p and word in p for p in problems_of(pm, bad))


def test_a_symlink_member_is_refused(pm: PackageManager, good: Path, tmp_path: Path) -> None:
    link = member("pkg_nodeps/passwd", mode=0o120777)
    bad = rewrite_wheel(good, tmp_path / good.name, add=[(link, b"/etc/passwd")])
    assert any("pkg_nodeps/passwd" in p and "symbolic link" in p for p in problems_of(pm, bad))


def test_a_wheel_without_metadata_is_refused(
    pm: PackageManager, good: Path, tmp_path: Path
) -> None:
    bad = rewrite_wheel(good, tmp_path / good.name, drop=lambda n: n.endswith("/METADATA"))
    assert any("METADATA is missing" in p for p in problems_of(pm, bad))


def test_metadata_without_name_and_version_is_refused(
    pm: PackageManager, good: Path, tmp_path: Path
) -> None:
    meta = f"{dist_info(good)}/METADATA"
    bad = rewrite_wheel(good, tmp_path / good.name, replace={meta: b"Metadata-Version: 2.1\n"})
    problems = problems_of(pm, bad)
    assert any("no Name" in p for p in problems)
    assert any("no Version" in p for p in problems)


def test_a_file_name_that_disagrees_with_metadata_is_refused(
    pm: PackageManager, good: Path, tmp_path: Path
) -> None:
    renamed = tmp_path / "other_plugin-2.0-py3-none-any.whl"
    shutil.copy(good, renamed)
    problems = problems_of(pm, renamed)
    assert any("'other-plugin'" in p and "pkg-nodeps" in p for p in problems)
    assert any("version 2.0" in p for p in problems)


def test_a_wheel_without_plugin_entry_points_is_refused(
    pm: PackageManager, good: Path, tmp_path: Path
) -> None:
    bad = rewrite_wheel(good, tmp_path / good.name, drop=lambda n: n.endswith("entry_points.txt"))
    assert any("hiagent.plugins" in p for p in problems_of(pm, bad))


def test_a_member_that_does_not_match_its_record_hash_is_refused(
    pm: PackageManager, good: Path, tmp_path: Path
) -> None:
    tampered = {"pkg_nodeps/__init__.py": b"import os; os.system('echo pwned')\n"}
    bad = rewrite_wheel(good, tmp_path / good.name, replace=tampered, fix_record=False)
    assert any("pkg_nodeps/__init__.py" in p and "RECORD hash" in p for p in problems_of(pm, bad))


def test_a_record_that_lists_a_missing_member_is_refused(
    pm: PackageManager, good: Path, tmp_path: Path
) -> None:
    bad = rewrite_wheel(
        good, tmp_path / good.name, drop=lambda n: n == "pkg_nodeps/__init__.py", fix_record=False
    )
    assert any("not in the wheel" in p for p in problems_of(pm, bad))


def test_a_wheel_that_unpacks_beyond_the_cap_is_refused(
    tmp_path: Path, wheelhouse: Path, good: Path
) -> None:
    pm = make_manager(tmp_path / "data", wheelhouse, max_unpacked_bytes=1000)
    padded = rewrite_wheel(
        good, tmp_path / good.name, add=[(member("pkg_nodeps/pad.bin"), bytes(2000))]
    )
    assert any("more than the cap of 1000" in p for p in problems_of(pm, padded))


def test_every_problem_of_a_wheel_is_listed_at_once(
    pm: PackageManager, good: Path, tmp_path: Path
) -> None:
    bad = rewrite_wheel(
        good,
        tmp_path / "other-9-py3-none-any.whl",
        drop=lambda n: n.endswith("entry_points.txt"),
        replace={"pkg_nodeps/__init__.py": b"changed\n"},
        add=[(member("../escape.py"), b""), (member("pkg_nodeps/l", mode=0o120777), b"/")],
        fix_record=False,
    )
    problems = problems_of(pm, bad)
    for expected in (
        "escapes",
        "symbolic link",
        "'other'",
        "version 9",
        "hiagent.plugins",
        "RECORD hash",
    ):
        assert any(expected in p for p in problems), (expected, problems)


@pytest.mark.parametrize(
    "filename",
    ["pkg_nodeps.zip", "../pkg_nodeps-1.0.0-py3-none-any.whl",
     "a/pkg_nodeps-1.0.0-py3-none-any.whl", "pkg_nodeps-notaversion-py3-none-any.whl", ""],
)  # fmt: skip
def test_a_file_name_that_is_no_wheel_name_is_an_invalid_request(
    pm: PackageManager, good: Path, filename: str
) -> None:
    with pytest.raises(HostError) as caught:
        pm.read_metadata(good.as_uri(), filename)
    assert caught.value.code == INVALID_REQUEST


def test_an_invalid_wheel_is_refused_before_anything_is_written(
    pm: PackageManager, good: Path, tmp_path: Path
) -> None:
    bad = rewrite_wheel(good, tmp_path / good.name, drop=lambda n: n.endswith("entry_points.txt"))
    with pytest.raises(HostError) as caught:
        pm.install(bad.as_uri(), bad.name, force=False)
    assert caught.value.code == INVALID_PACKAGE
    assert pm.list() == []
    assert not pm.config.paths.venvs_dir.exists()
    assert not pm.config.paths.extensions_dir.exists()
