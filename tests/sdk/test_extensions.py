"""extensions.load(): config from the environment, and local storage inside the data dir."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from hiagent_plugin_sdk import HttpException, setup_ssrf_proxy_env
from hiagent_plugin_sdk.extensions import load


def uri_path(uri: str) -> Path:
    parsed = urlparse(uri)
    assert parsed.scheme == "file"
    return Path(unquote(parsed.path))


def test_load_reads_the_package_environment(plugin_env: Path) -> None:
    config = load()
    assert config.data_dir == plugin_env
    assert (config.package_name, config.package_version) == ("hiagent-plugin-demo", "0.2.0")
    assert config.storage.backend == "local_path"
    assert config.storage.path == str(plugin_env / "storage")
    assert load() is config


def test_save_writes_inside_the_data_dir_and_returns_a_file_uri(plugin_env: Path) -> None:
    client = load().storage.get_client()
    uri = client.save("qrcode.png", b"\x89PNG data")
    path = uri_path(uri)
    assert path.read_bytes() == b"\x89PNG data"
    assert path.name == "qrcode.png"
    assert path.is_relative_to((plugin_env / "storage").resolve())


def test_saving_the_same_name_twice_keeps_both_files(plugin_env: Path) -> None:
    client = load().storage.get_client()
    first = client.save("same.txt", b"one")
    second = client.save("same.txt", b"two")
    assert first != second
    assert uri_path(first).read_bytes() == b"one"
    assert uri_path(second).read_bytes() == b"two"


def test_save_accepts_file_objects_and_honours_length(plugin_env: Path) -> None:
    client = load().storage.get_client()
    whole = client.save("a.bin", io.BytesIO(b"abcdef"))
    cut = client.save("b.bin", io.BytesIO(b"abcdef"), length=3)
    chunks = client.save("c.bin", [b"ab", b"cd"])
    assert uri_path(whole).read_bytes() == b"abcdef"
    assert uri_path(cut).read_bytes() == b"abc"
    assert uri_path(chunks).read_bytes() == b"abcd"


def test_save_allows_subdirectories_inside_its_storage(plugin_env: Path) -> None:
    uri = load().storage.get_client().save("nested/dir/out.txt", b"x")
    assert uri_path(uri).parts[-3:] == ("nested", "dir", "out.txt")


@pytest.mark.parametrize(
    "filename", ["../escape.txt", "../../escape.txt", "a/../../../x", "/etc/passwd", "", "a\\b"]
)
def test_save_refuses_filenames_that_escape_the_storage_dir(
    plugin_env: Path, filename: str
) -> None:
    with pytest.raises(HttpException) as caught:
        load().storage.get_client().save(filename, b"x")
    assert (caught.value.code, caught.value.http_code) == ("InvalidStorageFilename", 400)
    outside = [p for p in plugin_env.parent.rglob("*") if p.is_file()]
    assert outside == []


def test_storage_path_from_the_plugin_config_is_used(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv(
        "HIAGENT_PLUGIN_CONFIG",
        f'{{"storage": {{"backend": "local_path", "path": "{elsewhere}"}}}}',
    )
    uri = load().storage.get_client().save("f.txt", b"x")
    assert uri_path(uri).is_relative_to(elsewhere.resolve())


def test_unsupported_storage_backend_is_a_clear_error(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIAGENT_PLUGIN_CONFIG", '{"storage": {"backend": "ftp"}}')
    with pytest.raises(HttpException) as caught:
        load().storage.get_client()
    assert caught.value.code == "StorageBackendUnsupported"
    assert caught.value.data == {"backend": "ftp", "supported": ["local_path", "boto3", "minio"]}


def test_malformed_plugin_config_is_invalid_plugin_environment(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIAGENT_PLUGIN_CONFIG", "{not json")
    with pytest.raises(HttpException) as caught:
        load()
    assert caught.value.code == "InvalidPluginEnvironment"


def test_unknown_top_level_plugin_config_keys_are_ignored_for_newer_hosts(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIAGENT_PLUGIN_CONFIG", '{"future_feature": {"on": true}}')
    assert load().storage.backend == "local_path"


def test_load_without_any_environment_falls_back_to_a_temp_dir(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HIAGENT_PLUGIN_DATA_DIR", "HIAGENT_PACKAGE_NAME", "HIAGENT_PACKAGE_VERSION"):
        monkeypatch.delenv(name)
    config = load()
    assert config.data_dir.is_relative_to(Path(tempfile.gettempdir()))
    assert config.package_name == ""


def test_ssrf_proxy_url_sets_the_proxy_environment_once(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIAGENT_PLUGIN_CONFIG", '{"ssrf_proxy": "http://127.0.0.1:3128"}')
    assert load().ssrf_proxy.http_proxy == "http://127.0.0.1:3128"
    setup_ssrf_proxy_env()
    assert os.environ["HTTP_PROXY"] == os.environ["https_proxy"] == "http://127.0.0.1:3128"
    monkeypatch.setenv("HTTP_PROXY", "http://changed")
    setup_ssrf_proxy_env()  # idempotent: the second call does nothing
    assert os.environ["HTTP_PROXY"] == "http://changed"


def test_ssrf_proxy_object_sets_each_variable(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "HIAGENT_PLUGIN_CONFIG",
        '{"ssrf_proxy": {"http_proxy": "http://p:1", "https_proxy": "http://p:2",'
        ' "no_proxy": "localhost"}}',
    )
    setup_ssrf_proxy_env()
    assert os.environ["HTTP_PROXY"] == "http://p:1"
    assert os.environ["HTTPS_PROXY"] == "http://p:2"
    assert os.environ["NO_PROXY"] == "localhost"


def test_no_ssrf_proxy_leaves_the_environment_alone(plugin_env: Path) -> None:
    setup_ssrf_proxy_env()
    assert "HTTP_PROXY" not in os.environ
