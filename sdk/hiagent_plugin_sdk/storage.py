"""Where `save()` puts a plugin's files: a local directory, or an S3-compatible object store.

The configuration is the original runtime's `storage` shape::

    {"backend": "local_path" | "minio" | "boto3",
     "local_path": {"base_dir": "..."},
     "s3": {"ak", "sk", "endpoint", "region", "bucket", "public_endpoint", "path_style",
            "signature_version", "ssl_verify", "prefix", "presign_expiry_s",
            "connect_timeout_s", "read_timeout_s"}}

(`{"backend": "local_path", "path": "..."}`, the flat shape earlier hosts pass, is read too.)
A key this SDK does not know is an error, never silently dropped. `minio` and `boto3` both
mean an S3-compatible store reached with boto3, which is imported only when the first object
store client is made: plugins on local storage never load it (it is the SDK's `s3` extra).

Every save gets a fresh random directory (`<base_dir>/<id>/<filename>`, or the key
`<prefix><id>/<filename>`), so concurrent saves of the same name never overwrite each other.
An object store's URL is `<public_endpoint>/<key>` when `public_endpoint` is set, else a
presigned GET URL valid for `presign_expiry_s`.
"""

from __future__ import annotations

import contextlib
import io
import mimetypes
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Final, Protocol
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from hiagent_plugin_sdk import errors

LOCAL_PATH_BACKEND: Final = "local_path"
OBJECT_STORE_BACKENDS: Final = frozenset({"minio", "boto3"})
BACKENDS: Final = (LOCAL_PATH_BACKEND, *sorted(OBJECT_STORE_BACKENDS))
_CHUNK_BYTES: Final = 1 << 20
# A stream is spooled in memory up to this size, then to a temp file, before the upload.
SPOOL_MAX_BYTES: Final = 8 << 20
# S3 multipart parts are at least 5 MiB; a smaller `size` is ignored.
MIN_PART_BYTES: Final = 5 << 20
# SigV4 presigned URLs live at most seven days.
MAX_PRESIGN_EXPIRY_S: Final = 7 * 24 * 3600
# boto3's attempts per request (the first and retries); each is bounded by the timeouts.
S3_MAX_ATTEMPTS: Final = 2
# Region for SigV4 signing when none is configured (what S3-compatible servers expect).
DEFAULT_REGION: Final = "us-east-1"
SIGNATURE_VERSIONS: Final = {"s3v4": "s3v4", "v4": "s3v4", "s3": "s3", "v2": "s3"}

Data = bytes | bytearray | memoryview | BinaryIO | Iterable[bytes]


class StorageClient(Protocol):
    """What `StorageConfig.get_client()` returns, whatever the backend."""

    def save(self, filename: str, data: Data, length: int = -1, size: int = -1) -> str: ...


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LocalPathSettings(_Strict):
    """`storage.local_path`: the directory files go to (default: the package's data dir)."""

    base_dir: str | None = None


class S3Settings(_Strict):
    """`storage.s3`: an S3-compatible object store (AWS S3, MinIO, …)."""

    ak: str = Field(default="", repr=False)
    sk: SecretStr = SecretStr("")
    endpoint: str = ""
    region: str = ""
    bucket: str = ""
    public_endpoint: str = ""
    path_style: bool = False
    signature_version: str = "s3v4"
    ssl_verify: bool = True
    prefix: str = ""
    presign_expiry_s: int = Field(default=3600, ge=1, le=MAX_PRESIGN_EXPIRY_S)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("signature_version")
    @classmethod
    def _known_signature(cls, value: str) -> str:
        if value.lower() not in SIGNATURE_VERSIONS:
            raise ValueError(f"must be one of {', '.join(SIGNATURE_VERSIONS)}")
        return SIGNATURE_VERSIONS[value.lower()]

    @field_validator("endpoint", "public_endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


class StorageConfig(_Strict):
    """The `storage` section: which backend `save()` uses, and its settings."""

    backend: str = LOCAL_PATH_BACKEND
    local_path: LocalPathSettings = Field(default_factory=LocalPathSettings)
    s3: S3Settings = Field(default_factory=S3Settings)

    @model_validator(mode="before")
    @classmethod
    def _flat_local_path(cls, value: Any) -> Any:
        """Earlier hosts pass `{"path": …}` (or `base_dir`) beside `backend`."""
        if not isinstance(value, dict):
            return value
        flat = [key for key in ("path", "base_dir") if key in value]
        if not flat:
            return value
        if len(flat) > 1 or "local_path" in value:
            raise ValueError("give the directory once, as local_path.base_dir")
        rest = {k: v for k, v in value.items() if k != flat[0]}
        return rest | {"local_path": {"base_dir": value[flat[0]]}}

    @property
    def path(self) -> str | None:
        """The local directory (`local_path.base_dir`)."""
        return self.local_path.base_dir

    def get_client(self) -> StorageClient:
        """The client for the configured backend (one per configuration and process)."""
        if self.backend == LOCAL_PATH_BACKEND:
            if self.local_path.base_dir is None:
                raise errors.invalid_storage_config("storage.local_path.base_dir is not set")
            return LocalPathStorage(Path(self.local_path.base_dir))
        if self.backend in OBJECT_STORE_BACKENDS:
            return _object_store(self.backend, self.s3)
        raise errors.storage_backend_unsupported(self.backend, BACKENDS)


class LocalPathStorage:
    """Stores each file under `<root>/<random id>/<filename>` and returns its `file://` URI."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, filename: str, data: Data, length: int = -1, size: int = -1) -> str:
        """Write `data` (bytes, a binary file object or byte chunks; at most `length` bytes
        when `length >= 0`) and return the new file's `file://` URI. `size` is the object
        stores' part size, unused here."""
        del size
        directory = self.root / uuid.uuid4().hex
        target = _inside(directory, filename)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        try:
            with partial.open("wb") as out:
                for chunk in chunks(data, length):
                    out.write(chunk)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return target.as_uri()


class ObjectStorage:
    """Uploads each file as `<prefix><random id>/<filename>` and returns an http(s) URL."""

    def __init__(self, backend: str, settings: S3Settings, client: Any) -> None:
        self.backend = backend
        self.settings = settings
        self._client = client  # a boto3 S3 client: thread-safe, reused for every save

    def __repr__(self) -> str:
        where = self._where()
        return f"ObjectStorage({where['backend']}, {where['endpoint']}, bucket={where['bucket']})"

    def save(self, filename: str, data: Data, length: int = -1, size: int = -1) -> str:
        """Upload `data` (as `LocalPathStorage.save`; `size` is the multipart part size) and
        return the URL a remote caller fetches it with."""
        from boto3.s3.transfer import TransferConfig  # loaded with the client already
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.settings.prefix + f"{uuid.uuid4().hex}/{_object_name(filename)}"
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        transfer = TransferConfig(use_threads=False)
        if size >= MIN_PART_BYTES:
            transfer = TransferConfig(use_threads=False, multipart_chunksize=size)
        try:
            with _spooled(data, length) as body:
                self._client.upload_fileobj(
                    body,
                    self.settings.bucket,
                    key,
                    ExtraArgs={"ContentType": content_type},
                    Config=transfer,
                )
            if self.settings.public_endpoint:
                return f"{self.settings.public_endpoint}/{quote(key)}"
            url: str = self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.settings.bucket, "Key": key},
                ExpiresIn=self.settings.presign_expiry_s,
            )
            return url
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise errors.storage_refused(
                filename, self._where(), str(error.get("Code", "")), str(error.get("Message", ""))
            ) from exc
        except (BotoCoreError, OSError) as exc:
            raise errors.storage_unavailable(filename, self._where(), str(exc)) from exc

    def _where(self) -> dict[str, str]:
        endpoint = self.settings.endpoint or "AWS S3"
        return {"backend": self.backend, "endpoint": endpoint, "bucket": self.settings.bucket}


_CLIENTS: dict[tuple[str, S3Settings], ObjectStorage] = {}
_CLIENTS_LOCK = threading.Lock()


def _object_store(backend: str, settings: S3Settings) -> ObjectStorage:
    if not settings.bucket:
        raise errors.invalid_storage_config("storage.s3.bucket is not set")
    with _CLIENTS_LOCK:
        found = _CLIENTS.get((backend, settings))
        if found is None:
            found = ObjectStorage(backend, settings, _s3_client(settings))
            _CLIENTS[(backend, settings)] = found
        return found


def _s3_client(settings: S3Settings) -> Any:
    """A boto3 S3 client for `settings`; boto3 is imported here, on first use."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise errors.MissingDependency(
            "the S3 client (boto3) is not installed in this plugin's environment: install "
            "hiagent-plugin-sdk[s3] (hiagent-host adds it to venvs it builds while "
            "[plugin_storage] backend is minio or boto3; reinstall packages installed before)"
        ) from exc
    config = Config(
        signature_version=settings.signature_version,
        s3={"addressing_style": "path" if settings.path_style else "virtual"},
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.read_timeout_s,
        retries={"max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"},
    )
    secret = settings.sk.get_secret_value()
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.endpoint or None,
        region_name=settings.region or DEFAULT_REGION,
        aws_access_key_id=settings.ak or None,
        aws_secret_access_key=secret or None,
        verify=settings.ssl_verify,
        config=config,
    )


@contextlib.contextmanager
def _spooled(data: Data, length: int) -> Iterator[BinaryIO]:
    """A readable, seekable body for `data`: in memory, or spooled to a temp file if big."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        with io.BytesIO(view if length < 0 else view[:length]) as body:
            yield body
        return
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_BYTES) as spool:
        for chunk in chunks(data, length):
            spool.write(chunk)
        spool.seek(0)
        yield spool  # type: ignore[misc]  # a binary file object, which is what boto3 reads


def _object_name(filename: str) -> str:
    """`filename` as the last part of an object key: relative, no empty, `.` or `..` parts."""
    _plain(filename)
    if any(part in {"", ".", ".."} for part in filename.split("/")):
        raise errors.invalid_storage_filename(filename, "empty, '.' and '..' parts are not allowed")
    return filename


def _plain(filename: str) -> None:
    """Refuse empty names, NUL, backslashes and absolute paths."""
    if not filename or "\x00" in filename or "\\" in filename:
        raise errors.invalid_storage_filename(filename, "not a plain relative file name")
    if PurePosixPath(filename).is_absolute():
        raise errors.invalid_storage_filename(filename, "absolute paths are not allowed")


def _inside(directory: Path, filename: str) -> Path:
    """`directory/filename`, refusing names that are empty, absolute or resolve outside it."""
    _plain(filename)
    base = directory.resolve()
    target = (base / filename).resolve()
    if target == base or not target.is_relative_to(base):
        raise errors.invalid_storage_filename(filename, "it resolves outside the storage dir")
    return target


def chunks(data: Data, length: int) -> Iterator[bytes]:
    """`data` as byte chunks, at most `length` bytes in all when `length >= 0`."""
    remaining = length if length >= 0 else None
    if isinstance(data, bytes | bytearray | memoryview):
        blob = bytes(data)
        yield blob if remaining is None else blob[:remaining]
        return
    reader = getattr(data, "read", None)
    if reader is not None:
        while remaining is None or remaining > 0:
            chunk = reader(_CHUNK_BYTES if remaining is None else min(_CHUNK_BYTES, remaining))
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
        return
    for chunk in data:
        if remaining is not None:
            chunk = chunk[:remaining]
            remaining -= len(chunk)
        yield chunk
        if remaining == 0:
            return
