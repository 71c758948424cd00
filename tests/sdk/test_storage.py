"""Plugin storage: the original's config shape, unique local files, and a real S3 server."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hiagent_plugin_sdk import HttpException
from hiagent_plugin_sdk.extensions import load
from hiagent_plugin_sdk.storage import ObjectStorage, StorageClient

from tests.support.s3 import ACCESS_KEY, SECRET_KEY, S3Server

# A fetch from the S3 server on loopback answers at once: longer is a failure.
FETCH_TIMEOUT_S: Final = 10.0
BUCKET: Final = "plugin-files"


def configure(monkeypatch: pytest.MonkeyPatch, storage: dict[str, Any]) -> None:
    monkeypatch.setenv("HIAGENT_PLUGIN_CONFIG", json.dumps({"storage": storage}))


def s3_storage(server: S3Server, **s3: Any) -> dict[str, Any]:
    """The original's shape for an object store on `server`."""
    settings = {
        "ak": ACCESS_KEY,
        "sk": SECRET_KEY,
        "endpoint": server.endpoint,
        "region": "us-east-1",
        "bucket": BUCKET,
        "public_endpoint": "",
        "path_style": True,
        "signature_version": "s3v4",
        "ssl_verify": True,
    }
    return {"backend": "minio", "s3": settings | s3}


def object_client(monkeypatch: pytest.MonkeyPatch, server: S3Server, **s3: Any) -> StorageClient:
    """The SDK's client for BUCKET (created) on `server`, configured in the original's shape."""
    server.create_bucket(BUCKET)
    configure(monkeypatch, s3_storage(server, **s3))
    return load().storage.get_client()


def fetch(url: str) -> tuple[bytes, str]:
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:
        return response.read(), response.headers.get("Content-Type", "")


def uri_path(uri: str) -> Path:
    return Path(unquote(urlsplit(uri).path))


# ---- configuration --------------------------------------------------------------------


def test_the_original_storage_shape_is_read_with_the_secret_kept_out_of_reprs(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    configure(
        monkeypatch,
        {
            "backend": "boto3",
            "local_path": {"base_dir": str(tmp_path / "files")},
            "s3": {
                "ak": "AKIAEXAMPLE",
                "sk": "very-secret-key",
                "endpoint": "https://s3.example.com/",
                "region": "eu-west-1",
                "bucket": "outputs",
                "public_endpoint": "https://cdn.example.com",
                "path_style": False,
                "signature_version": "v4",
                "ssl_verify": False,
            },
        },
    )
    storage = load().storage
    assert storage.backend == "boto3"
    assert storage.path == str(tmp_path / "files")
    assert storage.s3.endpoint == "https://s3.example.com"
    assert storage.s3.signature_version == "s3v4"
    assert (storage.s3.bucket, storage.s3.ssl_verify, storage.s3.path_style) == (
        "outputs",
        False,
        False,
    )
    assert storage.s3.sk.get_secret_value() == "very-secret-key"
    assert "very-secret-key" not in repr(load())
    assert "AKIAEXAMPLE" not in repr(load())


@pytest.mark.parametrize(
    ("storage", "where"),
    [
        ({"backend": "local_path", "bakend": "x"}, "storage.bakend"),
        ({"s3": {"bucket": "b", "secret_key": "x"}}, "storage.s3.secret_key"),
        ({"local_path": {"base_dir": "/x", "root": "/y"}}, "storage.local_path.root"),
    ],
)
def test_a_storage_key_the_sdk_does_not_know_is_a_clear_error(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch, storage: dict[str, Any], where: str
) -> None:
    configure(monkeypatch, storage)
    with pytest.raises(HttpException) as caught:
        load()
    assert caught.value.code == "InvalidPluginEnvironment"
    assert where in caught.value.message


def test_bad_values_in_the_s3_section_are_clear_errors(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(
        monkeypatch,
        {"s3": {"endpoint": "s3.example.com", "signature_version": "v9", "presign_expiry_s": 0}},
    )
    with pytest.raises(HttpException) as caught:
        load()
    for key in ("storage.s3.endpoint", "storage.s3.signature_version", "presign_expiry_s"):
        assert key in caught.value.message


def test_an_object_store_without_a_bucket_is_invalid_storage_config(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, {"backend": "minio", "s3": {"endpoint": "http://127.0.0.1:9"}})
    with pytest.raises(HttpException) as caught:
        load().storage.get_client()
    assert caught.value.code == "InvalidStorageConfig"


def test_the_directory_given_twice_is_a_clear_error(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, {"path": "/a", "local_path": {"base_dir": "/b"}})
    with pytest.raises(HttpException) as caught:
        load()
    assert caught.value.code == "InvalidPluginEnvironment"


# ---- local_path ----------------------------------------------------------------------


def test_local_base_dir_in_the_original_shape_is_where_files_go(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    configure(monkeypatch, {"backend": "local_path", "local_path": {"base_dir": str(tmp_path)}})
    uri = load().storage.get_client().save("out/report.txt", b"r")
    path = uri_path(uri)
    assert path.read_bytes() == b"r"
    assert path.relative_to(tmp_path.resolve()).parts[1:] == ("out", "report.txt")


def test_concurrent_saves_of_one_name_never_overwrite_each_other(plugin_env: Path) -> None:
    client = load().storage.get_client()
    payloads = [f"payload {i}".encode() * 1000 for i in range(32)]
    with ThreadPoolExecutor(8) as pool:
        uris = list(pool.map(lambda data: client.save("same.bin", data), payloads))
    assert len(set(uris)) == len(payloads)
    assert [uri_path(uri).read_bytes() for uri in uris] == payloads


def test_local_storage_never_imports_the_s3_client(plugin_env: Path) -> None:
    script = (
        "import sys\n"
        "from hiagent_plugin_sdk.extensions import load\n"
        "load().storage.get_client().save('a.txt', b'x')\n"
        "print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


# ---- object stores (moto's S3 server on 127.0.0.1) -----------------------------------


def test_a_save_returns_a_presigned_url_that_fetches_the_same_bytes(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server
) -> None:
    client = object_client(monkeypatch, s3_server, prefix="demo/", presign_expiry_s=120)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64
    before = time.time()
    url = client.save("qr code.png", png)
    parts = urlsplit(url)
    assert parts.scheme == "http"
    assert parts.netloc == urlsplit(s3_server.endpoint).netloc
    assert unquote(parts.path).startswith(f"/{BUCKET}/demo/")
    assert unquote(parts.path).endswith("/qr code.png")
    query = parse_qs(parts.query)
    assert query["X-Amz-Expires"] == ["120"]
    signed_at = time.mktime(time.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ"))
    assert before - 2 <= signed_at - time.timezone <= time.time() + 2
    assert fetch(url) == (png, "image/png")


def test_saves_of_one_name_get_distinct_objects(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server
) -> None:
    client = object_client(monkeypatch, s3_server)
    with ThreadPoolExecutor(4) as pool:
        urls = list(pool.map(lambda i: client.save("same.txt", f"v{i}".encode()), range(8)))
    assert len({urlsplit(u).path for u in urls}) == 8
    assert [fetch(u)[0] for u in urls] == [f"v{i}".encode() for i in range(8)]


def test_with_a_public_endpoint_the_url_is_built_on_it(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server
) -> None:
    s3_server.make_public(s3_server.create_bucket(BUCKET))
    public = f"{s3_server.endpoint}/{BUCKET}"
    configure(monkeypatch, s3_storage(s3_server, public_endpoint=public))
    url = load().storage.get_client().save("notes/a b.txt", b"hello")
    assert url.startswith(f"{public}/")
    assert url.endswith("/notes/a%20b.txt")
    assert "X-Amz" not in url
    assert fetch(url) == (b"hello", "text/plain")


def test_streams_upload_exactly_the_bytes_asked_for(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server
) -> None:
    client = object_client(monkeypatch, s3_server)
    assert isinstance(client, ObjectStorage)
    big = bytes(range(256)) * 4096 * 9  # 9 MiB: spooled to a temp file, multipart parts
    whole = client.save("big.bin", io.BytesIO(big), size=5 << 20)
    cut = client.save("cut.bin", io.BytesIO(b"abcdef"), length=4)
    chunked = client.save("chunks.bin", [b"ab", b"cd", b"ef"], length=5)
    assert fetch(whole)[0] == big
    assert fetch(cut)[0] == b"abcd"
    assert fetch(chunked)[0] == b"abcde"


def test_object_store_file_names_may_not_escape_or_be_ambiguous(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server
) -> None:
    client = object_client(monkeypatch, s3_server)
    for name in ("../x", "a//b", "./a", "/etc/passwd", "", "a\\b"):
        with pytest.raises(HttpException) as caught:
            client.save(name, b"x")
        assert caught.value.code == "InvalidStorageFilename"
    assert s3_server.client().list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0


def test_unknown_credentials_are_refused_with_a_clear_error(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server
) -> None:
    client = object_client(monkeypatch, s3_server, ak="AKIAUNKNOWN", sk="wrong-secret")
    s3_server.require_auth()
    with pytest.raises(HttpException) as caught:
        client.save("a.txt", b"x")
    error = caught.value
    assert (error.code, error.http_code) == ("StorageRefused", 502)
    assert error.data["store_error"] == "InvalidAccessKeyId"
    assert error.data["bucket"] == BUCKET
    assert "wrong-secret" not in error.message


def test_a_missing_bucket_is_refused_with_a_clear_error(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server
) -> None:
    configure(monkeypatch, s3_storage(s3_server, bucket="no-such-bucket"))
    with pytest.raises(HttpException) as caught:
        load().storage.get_client().save("a.txt", b"x")
    assert caught.value.code == "StorageRefused"
    assert caught.value.data["store_error"] == "NoSuchBucket"


def test_a_stopped_store_is_unavailable(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server
) -> None:
    client = object_client(monkeypatch, s3_server, connect_timeout_s=1.0, read_timeout_s=2.0)
    s3_server.stop()
    with pytest.raises(HttpException) as caught:
        client.save("a.txt", b"x")
    assert (caught.value.code, caught.value.http_code) == ("StorageUnavailable", 503)
