"""The S3 packages store against a real S3-compatible server (moto's, on 127.0.0.1)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec
import pytest

from hiagent_host.config import StoreConfig
from hiagent_host.errors import STORAGE_UNAVAILABLE, HostError
from hiagent_host.store import S3Store
from tests.support.s3 import PackagesS3


def _store(server: PackagesS3, **extra: object) -> S3Store:
    return S3Store(msgspec.convert(server.store_settings(**extra), StoreConfig))


def test_a_wheel_goes_in_by_sha256_and_comes_back_byte_for_byte(
    packages_s3: PackagesS3, tmp_path: Path
) -> None:
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    wheel.write_bytes(b"not really a zip, but bytes are bytes" * 1000)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    store = _store(packages_s3)
    store.put_wheel(sha, wheel.name, wheel)
    store.put_wheel(sha, wheel.name, wheel)  # already there: nothing happens
    got = store.get_wheel(sha, wheel.name, tmp_path / "out" / wheel.name)
    assert got is not None
    assert (got.sha256, got.size) == (sha, wheel.stat().st_size)
    assert got.path.read_bytes() == wheel.read_bytes()
    assert store.get_wheel("0" * 64, wheel.name, tmp_path / "missing.whl") is None
    assert not (tmp_path / "missing.whl").exists()


def test_records_are_written_read_listed_and_deleted_under_the_prefix(
    packages_s3: PackagesS3,
) -> None:
    store = _store(packages_s3, prefix="team-a/")
    other = _store(packages_s3, prefix="team-b/")
    store.put_record("demo", "1.0", b'{"a": 1}')
    store.put_record("demo", "2.0", b'{"a": 2}')
    assert store.get_record("demo", "1.0") == b'{"a": 1}'
    assert store.get_record("demo", "3.0") is None
    assert sorted(data for _, data in store.list_records()) == [b'{"a": 1}', b'{"a": 2}']
    assert other.list_records() == []
    store.delete_record("demo", "1.0")
    assert [data for _, data in store.list_records()] == [b'{"a": 2}']


def test_an_unreachable_store_is_storage_unavailable_without_the_secret(
    packages_s3: PackagesS3, caplog: pytest.LogCaptureFixture
) -> None:
    store = _store(packages_s3)
    packages_s3.stop()
    try:
        with pytest.raises(HostError) as info:
            store.get_record("demo", "1.0")
    finally:
        packages_s3.start()
    assert info.value.code == STORAGE_UNAVAILABLE
    assert info.value.http_status == 503
    assert info.value.data["retry_after_s"] > 0
    assert packages_s3.secret_key not in caplog.text + repr(store) + str(info.value.data)
    assert store.get_record("demo", "1.0") is None  # back: it simply works again


def test_a_missing_bucket_is_storage_unavailable(packages_s3: PackagesS3) -> None:
    store = _store(packages_s3, bucket="no-such-bucket-here")
    with pytest.raises(HostError) as info:
        store.check()
    assert info.value.code == STORAGE_UNAVAILABLE


def test_the_secret_can_come_from_a_file_and_never_shows_in_repr(
    packages_s3: PackagesS3, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(packages_s3.secret_key + "\n")
    settings = packages_s3.store_settings(secret_access_key="", secret_access_key_file=secret_file)
    config = msgspec.convert(settings, StoreConfig, dec_hook=lambda t, o: Path(o))
    store = S3Store(config)
    store.check()
    assert packages_s3.secret_key not in repr(config) + repr(store)
