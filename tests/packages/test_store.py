"""The package manager with an S3 packages store (moto's server) and with build leases."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import msgspec
import pytest

from hiagent_host.config import Config, StoreConfig
from hiagent_host.errors import (
    ALREADY_INSTALLED,
    PACKAGE_NOT_FOUND,
    STORAGE_UNAVAILABLE,
    STORED_WHEEL_CORRUPT,
    HostError,
)
from hiagent_host.packages import PackageManager, PackageRecord
from tests.packages.support import build_plugin
from tests.support.configs import offline_config
from tests.support.s3 import PackagesS3

NAME = "hiagent-plugin-stored"


def _config(root: Path, wheelhouse: Path, s3: PackagesS3) -> Config:
    base = offline_config(root, wheelhouse)
    store = msgspec.convert(s3.store_settings(), StoreConfig)
    return msgspec.structs.replace(base, store=store)


def _node(root: Path, wheelhouse: Path, s3: PackagesS3) -> PackageManager:
    return PackageManager(_config(root, wheelhouse, s3))


def _installed_on_a(
    tmp_path: Path, wheelhouse: Path, s3: PackagesS3
) -> tuple[PackageManager, PackageManager, PackageRecord]:
    """Nodes a and b on one store, the test package installed through a."""
    wheel = build_plugin(tmp_path, NAME, "1.0")
    a, b = _node(tmp_path / "a", wheelhouse, s3), _node(tmp_path / "b", wheelhouse, s3)
    return a, b, a.install(wheel.as_uri(), wheel.name, force=False)


def _run_build_tool(pm: PackageManager, record: PackageRecord) -> str:
    """Run the plugin's `build` tool in the node's venv, without the pool."""
    code = (
        "import importlib.metadata as m, json;"
        "ep = next(iter(m.entry_points(group='hiagent.plugins')));"
        "print(json.dumps(ep.load()().build()))"
    )
    out = subprocess.run(
        [str(pm.venv_python(record)), "-c", code], check=True, capture_output=True, timeout=60
    )
    result: str = json.loads(out.stdout)
    return result


def test_an_install_on_one_node_is_served_by_another_after_materialising(
    tmp_path: Path, wheelhouse: Path, packages_s3: PackagesS3
) -> None:
    wheel = build_plugin(tmp_path, NAME, "1.0", build="first")
    a = _node(tmp_path / "a", wheelhouse, packages_s3)
    b = _node(tmp_path / "b", wheelhouse, packages_s3)
    installed = a.install(wheel.as_uri(), wheel.name, force=False)

    keys = [
        o["Key"]
        for o in packages_s3.client().list_objects_v2(Bucket=packages_s3.bucket)["Contents"]
    ]
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert sorted(keys) == [
        "hiagent/records/hiagent_plugin_stored/1.0.json",
        f"hiagent/wheels/{sha}/{wheel.name}",
    ]
    seen = b.get(NAME, "1.0")
    assert seen.build == installed.build
    assert [r.build for r in b.list()] == [installed.build]
    assert not b.is_materialised(seen)
    assert not b.venv_dir(seen).exists()

    b.materialise(seen)
    assert b.is_materialised(seen)
    assert b.venv_dir(seen).is_relative_to(tmp_path / "b")
    assert _run_build_tool(b, seen) == "first"
    local = b.list_local()
    assert [(r.build, r.wheel_sha256) for r in local] == [(installed.build, installed.wheel_sha256)]


def test_a_reinstall_elsewhere_replaces_the_view_and_drops_the_old_build_here(
    tmp_path: Path, wheelhouse: Path, packages_s3: PackagesS3
) -> None:
    first = build_plugin(tmp_path, NAME, "1.0", build="first")
    second = build_plugin(tmp_path, NAME, "1.0", build="second")
    a = _node(tmp_path / "a", wheelhouse, packages_s3)
    b = _node(tmp_path / "b", wheelhouse, packages_s3)
    old = a.install(first.as_uri(), first.name, force=False)
    b.materialise(b.get(NAME, "1.0"))
    events = []
    b.add_listener(events.append)

    with pytest.raises(HostError) as info:
        a.install(second.as_uri(), second.name, force=False)
    assert info.value.code == ALREADY_INSTALLED
    new = a.install(second.as_uri(), second.name, force=True)
    b.refresh(new.dir_name, new.version_dir)

    assert [(e.kind, e.record.build if e.record else None) for e in events] == [
        ("replaced", new.build)
    ]
    assert b.get(NAME, "1.0").build == new.build
    assert not b.layout.build_dir(old.dir_name, old.build).exists()
    assert b.list_local() == []
    b.materialise(b.get(NAME, "1.0"))
    assert _run_build_tool(b, b.get(NAME, "1.0")) == "second"


def test_a_delete_elsewhere_is_a_404_here_and_removes_what_was_materialised(
    tmp_path: Path, wheelhouse: Path, packages_s3: PackagesS3
) -> None:
    a, b, record = _installed_on_a(tmp_path, wheelhouse, packages_s3)
    b.materialise(b.get(NAME, "1.0"))

    assert a.delete(NAME, "1.0") is True
    assert packages_s3.client().list_objects_v2(Bucket=packages_s3.bucket).get("Contents", []) == []
    b.sync()
    with pytest.raises(HostError) as info:
        b.get(NAME, "1.0")
    assert info.value.code == PACKAGE_NOT_FOUND
    assert not b.layout.build_dir(record.dir_name, record.build).exists()
    assert b.list_local() == []
    assert a.delete(NAME, "1.0") is False


def test_an_unreachable_store_fails_the_install_with_503_and_leaves_nothing(
    tmp_path: Path, wheelhouse: Path, packages_s3: PackagesS3
) -> None:
    wheel = build_plugin(tmp_path, NAME, "1.0")
    a = _node(tmp_path / "a", wheelhouse, packages_s3)
    a.list()  # loaded while the store answers
    packages_s3.stop()
    try:
        with pytest.raises(HostError) as info:
            a.install(wheel.as_uri(), wheel.name, force=False)
    finally:
        packages_s3.start()
    assert (info.value.code, info.value.http_status) == (STORAGE_UNAVAILABLE, 503)
    assert a.list_local() == []
    assert packages_s3.client().list_objects_v2(Bucket=packages_s3.bucket).get("Contents", []) == []
    assert list((tmp_path / "a" / "venvs").glob("hiagent_plugin_stored/.1.0-*")) == []


def test_a_stored_wheel_that_does_not_match_its_sha256_is_refused_and_reported(
    tmp_path: Path, wheelhouse: Path, packages_s3: PackagesS3
) -> None:
    _, b, record = _installed_on_a(tmp_path, wheelhouse, packages_s3)
    key = f"hiagent/wheels/{record.wheel_sha256}/{record.filename}"
    packages_s3.client().put_object(Bucket=packages_s3.bucket, Key=key, Body=b"tampered")

    with pytest.raises(HostError) as info:
        b.materialise(b.get(NAME, "1.0"))
    assert info.value.code == STORED_WHEEL_CORRUPT
    assert b.remote is not None
    assert record.filename in b.remote.integrity_failures
    assert not b.is_materialised(b.get(NAME, "1.0"))
    assert not (b.layout.cache_dir / record.wheel_sha256).exists()


def test_a_build_in_use_survives_a_reinstall_and_goes_with_its_last_user(
    tmp_path: Path, wheelhouse: Path
) -> None:
    """The local backend on a shared file system: two managers, one set of directories."""
    first = build_plugin(tmp_path, NAME, "1.0", build="first")
    second = build_plugin(tmp_path, NAME, "1.0", build="second")
    config = offline_config(tmp_path / "shared", wheelhouse)
    node_a, node_b = PackageManager(config), PackageManager(config)
    old = node_a.install(first.as_uri(), first.name, force=False)
    lease = node_a.lease(old)  # node A runs a process from the build
    assert lease is not None

    new = node_b.install(second.as_uri(), second.name, force=True)
    assert node_a.venv_dir(old).is_dir()  # B could not remove it: A's process runs from it
    node_b.recover()
    assert node_a.venv_dir(old).is_dir()

    lease.release()
    node_a.release_build(old.dir_name, old.version_dir, old.build)
    assert not node_a.venv_dir(old).exists()
    assert node_a.venv_dir(new).is_dir()
    node_a.release_build(new.dir_name, new.version_dir, new.build)  # current: it stays
    assert node_a.venv_dir(new).is_dir()
