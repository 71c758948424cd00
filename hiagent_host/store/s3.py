"""The S3 packages store: wheels by sha256 and install records, in any S3-compatible store.

Keys, under `[store] prefix`:

    wheels/<sha256>/<filename>        a wheel's exact bytes (x-amz-meta-sha256 repeats the hash)
    records/<dir>/<version>.json      the install record of one package version (the commit)

boto3 does the HTTP, signing, retries and timeouts (`s3_client`, reusable by anything else
that talks to an S3-compatible store). Every call here is synchronous and bounded by the
connection's timeouts and attempts; callers on an event loop run it in a worker thread. A
store that cannot be reached (or refuses us) is `StorageUnavailable`, 503 with Retry-After.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import boto3
import botocore.config
import botocore.exceptions

from hiagent_host.config import S3Connection, StoreConfig, redact_url
from hiagent_host.errors import STORAGE_UNAVAILABLE, ConfigError, HostError
from hiagent_host.storage.atomic import fsync_dir

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import GetObjectOutputTypeDef

log = logging.getLogger(__name__)

WHEELS: Final = "wheels/"
RECORDS: Final = "records/"
RECORD_SUFFIX: Final = ".json"
CHUNK_BYTES: Final = 1024 * 1024
# A client that gets StorageUnavailable may try again after this long.
RETRY_AFTER_S: Final = 5
# S3 error codes that mean "there is no such object" rather than trouble.
MISSING: Final = frozenset({"404", "NoSuchKey", "NotFound"})


class StorageUnavailable(HostError):
    """The packages store cannot be reached, or refuses this node."""

    code = STORAGE_UNAVAILABLE
    http_status = 503


@dataclass(frozen=True)
class StoredObject:
    """A wheel copied out of the store, with the hash of the bytes actually received."""

    path: Path
    sha256: str
    size: int


def _secret(conn: S3Connection) -> str:
    if conn.secret_access_key_file is None:
        return conn.secret_access_key
    try:
        return conn.secret_access_key_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"store.secret_access_key_file: cannot read: {exc.strerror}") from exc


def s3_client(conn: S3Connection) -> S3Client:
    """A boto3 S3 client for `conn` (endpoint, region, path style, TLS, timeouts, retries)."""
    config = botocore.config.Config(
        region_name=conn.region,
        connect_timeout=conn.connect_timeout_s,
        read_timeout=conn.read_timeout_s,
        retries={"max_attempts": conn.max_attempts, "mode": "standard"},
        s3={"addressing_style": "path" if conn.path_style else "auto"},
        signature_version="s3v4",
    )
    verify: bool | str = str(conn.ca_bundle) if conn.ca_bundle else conn.verify_tls
    secret = _secret(conn)
    # Both empty: boto3's own chain (AWS_* variables, profiles, instance roles).
    given = bool(conn.access_key_id or secret)
    session = boto3.session.Session()
    client: S3Client = session.client(
        "s3",
        endpoint_url=conn.endpoint_url or None,
        verify=verify,
        config=config,
        aws_access_key_id=conn.access_key_id if given else None,
        aws_secret_access_key=secret if given else None,
    )
    return client


def identity_of(config: StoreConfig) -> str:
    """Which store this is (nodes of one deployment must agree on it); no credentials."""
    endpoint = redact_url(config.endpoint_url) or f"s3.{config.region}"
    return f"{endpoint}/{config.bucket}/{config.prefix}"


class S3Store:
    """The packages store in one bucket under one prefix (see the module docstring)."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.bucket = config.bucket
        self.prefix = config.prefix
        self._client = s3_client(config)

    def __repr__(self) -> str:
        return f"S3Store({self.identity!r})"

    @property
    def identity(self) -> str:
        return identity_of(self.config)

    # ---- keys --------------------------------------------------------------------------

    def wheel_key(self, sha256: str, filename: str) -> str:
        return f"{self.prefix}{WHEELS}{sha256}/{filename}"

    def record_key(self, dir_name: str, version_dir: str) -> str:
        return f"{self.prefix}{RECORDS}{dir_name}/{version_dir}{RECORD_SUFFIX}"

    # ---- wheels ------------------------------------------------------------------------

    def put_wheel(self, sha256: str, filename: str, path: Path) -> None:
        """Upload the wheel at `path` unless the store already holds it."""
        key = self.wheel_key(sha256, filename)
        with self._errors(f"store the wheel {filename}"):
            if self._exists(key):
                return
            with path.open("rb") as body:
                self._client.put_object(
                    Bucket=self.bucket, Key=key, Body=body, Metadata={"sha256": sha256}
                )

    def get_wheel(self, sha256: str, filename: str, dest: Path) -> StoredObject | None:
        """Copy the stored wheel to `dest` (atomically), hashing it; None if it is missing."""
        key = self.wheel_key(sha256, filename)
        partial = dest.with_name(f".partial-{os.getpid()}-{os.urandom(4).hex()}")
        digest = hashlib.sha256()
        size = 0
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._errors(f"read the wheel {filename}"):
                response = self._get_object(key)
                if response is None:
                    return None
                body = response["Body"]
                with partial.open("xb") as out:
                    for chunk in body.iter_chunks(CHUNK_BYTES):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
            partial.replace(dest)
            fsync_dir(dest.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        return StoredObject(path=dest, sha256=digest.hexdigest(), size=size)

    def delete_wheel(self, sha256: str, filename: str) -> None:
        with self._errors(f"delete the wheel {filename}"):
            self._client.delete_object(Bucket=self.bucket, Key=self.wheel_key(sha256, filename))

    # ---- records -----------------------------------------------------------------------

    def put_record(self, dir_name: str, version_dir: str, data: bytes) -> None:
        """Write a record (S3 replaces an object whole: readers see the old or the new)."""
        with self._errors(f"store the record of {dir_name} {version_dir}"):
            self._client.put_object(
                Bucket=self.bucket,
                Key=self.record_key(dir_name, version_dir),
                Body=data,
                ContentType="application/json",
            )

    def get_record(self, dir_name: str, version_dir: str) -> bytes | None:
        with self._errors(f"read the record of {dir_name} {version_dir}"):
            return self._get(self.record_key(dir_name, version_dir))

    def delete_record(self, dir_name: str, version_dir: str) -> None:
        with self._errors(f"delete the record of {dir_name} {version_dir}"):
            self._client.delete_object(
                Bucket=self.bucket, Key=self.record_key(dir_name, version_dir)
            )

    def list_records(self) -> list[tuple[str, bytes]]:
        """Every record in the store, as (key, bytes); a record deleted meanwhile is skipped."""
        found: list[tuple[str, bytes]] = []
        with self._errors("list the records"):
            for key in self._keys(f"{self.prefix}{RECORDS}"):
                if key.endswith(RECORD_SUFFIX) and (data := self._get(key)) is not None:
                    found.append((key, data))
        return found

    def check(self) -> None:
        """Raise StorageUnavailable unless the bucket answers."""
        with self._errors("reach the bucket"):
            self._client.head_bucket(Bucket=self.bucket)

    # ---- helpers -----------------------------------------------------------------------

    def _keys(self, prefix: str) -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    def _get(self, key: str) -> bytes | None:
        response = self._get_object(key)
        if response is None:
            return None
        data: bytes = response["Body"].read()
        return data

    def _get_object(self, key: str) -> GetObjectOutputTypeDef | None:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in MISSING:
                return None
            raise

    def _exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in MISSING:
                return False
            raise
        return True

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """botocore's failures → StorageUnavailable naming the store, never a credential."""
        try:
            yield
        except botocore.exceptions.ClientError as exc:
            raise self._unavailable(action, f"{_code(exc)}: {_message(exc)}") from exc
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise self._unavailable(action, f"{type(exc).__name__}: {exc}") from exc

    def _unavailable(self, action: str, reason: str) -> StorageUnavailable:
        log.warning("packages store %s: cannot %s: %s", self.identity, action, reason)
        return StorageUnavailable(
            f"the packages store is unavailable: cannot {action} ({reason})",
            data={"store": self.identity, "reason": reason, "retry_after_s": RETRY_AFTER_S},
        )


def _code(exc: botocore.exceptions.ClientError) -> str:
    error: Any = exc.response.get("Error", {})
    return str(error.get("Code", "")) or str(
        exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
    )


def _message(exc: botocore.exceptions.ClientError) -> str:
    error: Any = exc.response.get("Error", {})
    return str(error.get("Message", "")) or "no message"
