"""Plugin storage reaches plugin processes: local files, or an S3 server fetched over HTTP."""

from __future__ import annotations

import base64
import json
import logging
import urllib.request
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import msgspec
import pytest

from hiagent_host.config import (
    Config,
    LocalPathStorage,
    PackagePolicy,
    PluginStorageConfig,
    S3Storage,
)
from hiagent_host.errors import (
    MISSING_DEPENDENCY,
    STORAGE_REFUSED,
    STORAGE_UNAVAILABLE,
    HostError,
)
from hiagent_host.pool import Pool, launcher
from hiagent_host.pool.child import LaunchSpec
from hiagent_host.pool.plugin_config import plugin_config, storage_section
from tests.pool.support import Store, open_pool
from tests.support.s3 import ACCESS_KEY, SECRET_KEY, S3Server

pytestmark = pytest.mark.anyio

NAME: Final = "hiagent-plugin-storage"
BUCKET: Final = "plugin-files"
FETCH_TIMEOUT_S: Final = 10.0
PNG: Final = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 16


def object_store(endpoint: str = "http://127.0.0.1:9", **s3: Any) -> PluginStorageConfig:
    settings = S3Storage(
        ak=ACCESS_KEY, sk=SECRET_KEY, endpoint=endpoint, bucket=BUCKET, path_style=True
    )
    return PluginStorageConfig(backend="minio", s3=msgspec.structs.replace(settings, **s3))


def install(
    tmp_path_factory: pytest.TempPathFactory,
    wheelhouse: Path,
    wheel: Path,
    storage: PluginStorageConfig,
) -> Store:
    store = Store(root=tmp_path_factory.mktemp("storage-store"), wheelhouse=wheelhouse, versions={})
    manager = store.manager(with_storage(store, storage))
    record = manager.install(wheel.as_uri(), wheel.name, force=False)
    store.versions[record.name] = record.version
    return store


def with_storage(store: Store, storage: PluginStorageConfig, **pool: Any) -> Config:
    return msgspec.structs.replace(store.config(**pool), plugin_storage=storage)


@pytest.fixture(scope="module")
def s3_store(
    tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, built_wheels: dict[str, Path]
) -> Store:
    """The storage plugin installed while plugin storage is an object store."""
    return install(tmp_path_factory, wheelhouse, built_wheels["storage"], object_store())


@pytest.fixture(scope="module")
def local_store(
    tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, built_wheels: dict[str, Path]
) -> Store:
    """The storage plugin installed with the default (local) plugin storage."""
    return install(tmp_path_factory, wheelhouse, built_wheels["storage"], PluginStorageConfig())


@pytest.fixture
def bucket(s3_server: S3Server) -> S3Server:
    s3_server.create_bucket(BUCKET)
    return s3_server


async def save(pool: Pool, store: Store, filename: str, data: bytes) -> Any:
    tool_input = {"filename": filename, "data_b64": base64.b64encode(data).decode()}
    return await pool.run_tool(NAME, store.versions[NAME], "storage", "save", tool_input, None)


async def environment(pool: Pool, store: Store) -> Any:
    return await pool.run_tool(NAME, store.versions[NAME], "storage", "environment", {}, None)


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:
        data: bytes = response.read()
        return data


async def test_a_plugin_saving_to_an_object_store_returns_a_url_that_fetches_the_bytes(
    s3_store: Store, bucket: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = with_storage(s3_store, object_store(bucket.endpoint, prefix="out/"))
    async with open_pool(s3_store, config) as pool:
        env = await environment(pool, s3_store)
        url = await save(pool, s3_store, "qr.png", PNG)
    assert env == {"backend": "minio", "has_boto3": True}
    path = unquote(urlsplit(url).path)
    assert path.startswith(f"/{BUCKET}/out/{NAME}/")
    assert path.endswith("/qr.png")
    assert fetch(url) == PNG
    logs = [p.read_text(errors="replace") for p in s3_store.root.rglob("*.log")]
    assert not any(SECRET_KEY in text for text in [*logs, caplog.text])


async def test_refused_credentials_reach_the_caller_as_a_clear_plugin_error(
    s3_store: Store, bucket: S3Server
) -> None:
    config = with_storage(s3_store, object_store(bucket.endpoint, ak="AKIABAD", sk="bad"))
    bucket.require_auth()
    async with open_pool(s3_store, config) as pool:
        with pytest.raises(HostError) as caught:
            await save(pool, s3_store, "a.txt", b"x")
    assert caught.value.code == STORAGE_REFUSED
    assert caught.value.http_status == 502


async def test_a_stopped_store_is_storage_unavailable_before_the_call_times_out(
    s3_store: Store, s3_server: S3Server
) -> None:
    endpoint = s3_server.endpoint
    s3_server.stop()
    storage = object_store(endpoint, connect_timeout_s=1.0, read_timeout_s=2.0)
    config = with_storage(s3_store, storage, call_timeout_s=20.0)
    async with open_pool(s3_store, config) as pool:
        with pytest.raises(HostError) as caught:
            await save(pool, s3_store, "a.txt", b"x")
    assert caught.value.code == STORAGE_UNAVAILABLE


async def test_local_storage_venvs_lack_the_s3_client_and_saves_are_files_in_base_dir(
    local_store: Store, tmp_path: Path
) -> None:
    files = tmp_path / "files"
    storage = PluginStorageConfig(local_path=LocalPathStorage(base_dir=files))
    config = with_storage(local_store, storage)
    async with open_pool(local_store, config) as pool:
        env = await environment(pool, local_store)
        first = await save(pool, local_store, "same.txt", b"one")
        second = await save(pool, local_store, "same.txt", b"two")
    assert env == {"backend": "local_path", "has_boto3": False}
    paths = [Path(unquote(urlsplit(uri).path)) for uri in (first, second)]
    assert [p.read_bytes() for p in paths] == [b"one", b"two"]
    assert all(p.is_relative_to(files / NAME) for p in paths)


def test_each_package_gets_its_own_prefix_and_directory(tmp_path: Path) -> None:
    storage = object_store(prefix="plugins/")
    section = storage_section(storage, "HiAgent_Plugin.QR", tmp_path / "data")
    assert section["s3"]["prefix"] == "plugins/hiagent-plugin-qr/"
    assert section["local_path"]["base_dir"] == str(tmp_path / "data" / "storage")
    assert section["s3"]["sk"] == SECRET_KEY


def test_the_operators_plugin_config_keeps_its_keys_beside_storage(tmp_path: Path) -> None:
    value = json.loads(
        plugin_config(
            PluginStorageConfig(), "p", tmp_path, '{"ssrf_proxy": "http://127.0.0.1:3128"}'
        )
    )
    assert value["ssrf_proxy"] == "http://127.0.0.1:3128"
    assert value["storage"]["backend"] == "local_path"
    assert "s3" not in value["storage"]  # no credentials where no object store is used


def test_a_childs_launch_spec_keeps_the_storage_credentials_out_of_its_repr(
    tmp_path: Path,
) -> None:
    config = with_storage(Store(tmp_path, tmp_path, {}), object_store())
    env = launcher.environment(
        config.pool,
        PackagePolicy(),
        name=NAME,
        version="0.1.0",
        venv_bin=tmp_path / "bin",
        data_dir=tmp_path,
        storage=config.plugin_storage,
    )
    spec = LaunchSpec(argv=["python"], env=env, cwd=tmp_path, log_path=tmp_path / "log")
    assert SECRET_KEY in env["HIAGENT_PLUGIN_CONFIG"]
    assert SECRET_KEY not in repr(spec)


async def test_a_venv_built_for_local_storage_says_how_to_get_the_s3_client(
    local_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    config = with_storage(local_store, object_store())
    async with open_pool(local_store, config) as pool:
        with pytest.raises(HostError) as caught:
            await save(pool, local_store, "a.txt", b"x")
    assert caught.value.code == MISSING_DEPENDENCY
    assert "reinstall" in caught.value.message
    assert f"{NAME} 0.1.0 was installed while plugin storage was local" in caplog.text
