"""Plugin-side configuration the host passes in the environment, and the storage it names.

The host sets, for every plugin process:

- ``HIAGENT_PLUGIN_DATA_DIR``: a writable directory owned by this package;
- ``HIAGENT_PLUGIN_CONFIG``: optional JSON object, e.g.
  ``{"storage": {"backend": "local_path", "path": "..."}, "ssrf_proxy": "http://proxy:3128"}``;
- ``HIAGENT_PACKAGE_NAME`` / ``HIAGENT_PACKAGE_VERSION``.

`load()` reads them once (no file is needed). With none of them set it still works: data then
goes to a per-user directory under the system temp dir. Unknown keys in the JSON are ignored
so that a newer host can talk to an older SDK.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Final

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from hiagent_plugin_sdk import errors

ENV_DATA_DIR: Final = "HIAGENT_PLUGIN_DATA_DIR"
ENV_CONFIG: Final = "HIAGENT_PLUGIN_CONFIG"
ENV_PACKAGE_NAME: Final = "HIAGENT_PACKAGE_NAME"
ENV_PACKAGE_VERSION: Final = "HIAGENT_PACKAGE_VERSION"
LOCAL_PATH_BACKEND: Final = "local_path"
STORAGE_SUBDIR: Final = "storage"
_CHUNK_BYTES: Final = 1 << 20


class LocalPathStorage:
    """Stores each file under `<root>/<random id>/<filename>` and returns its `file://` URI."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def save(
        self,
        filename: str,
        data: bytes | bytearray | memoryview | BinaryIO | Iterable[bytes],
        length: int = -1,
        size: int = -1,
    ) -> str:
        """Write `data` (bytes, a binary file object or byte chunks; at most `length` bytes
        when `length >= 0`) and return the new file's `file://` URI. `size` is accepted for
        compatibility with object-store backends (their part size) and unused here."""
        del size
        directory = self.root / uuid.uuid4().hex
        target = _inside(directory, filename)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        try:
            with partial.open("wb") as out:
                for chunk in _chunks(data, length):
                    out.write(chunk)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return target.as_uri()


class StorageConfig(BaseModel):
    """Where `save()` puts files. Only the `local_path` backend exists in this SDK."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    backend: str = LOCAL_PATH_BACKEND
    path: str | None = Field(default=None, validation_alias=AliasChoices("path", "base_dir"))

    def get_client(self) -> LocalPathStorage:
        if self.backend != LOCAL_PATH_BACKEND:
            raise errors.storage_backend_unsupported(self.backend)
        if self.path is None:
            raise errors.invalid_plugin_environment(ENV_CONFIG, "storage.path is not set")
        return LocalPathStorage(Path(self.path))


class SSRFProxy(BaseModel):
    """The proxy outbound requests to user-supplied URLs must go through."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    http_proxy: str = ""
    https_proxy: str = ""
    no_proxy: str = ""


class PluginConfig(BaseModel):
    """Everything the host told this plugin process about its environment."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    data_dir: Path
    package_name: str = ""
    package_version: str = ""
    storage: StorageConfig = Field(default_factory=StorageConfig)
    ssrf_proxy: SSRFProxy = Field(default_factory=SSRFProxy)

    @field_validator("ssrf_proxy", mode="before")
    @classmethod
    def _proxy_url(cls, value: Any) -> Any:
        """A bare URL is the proxy for both schemes; null means none."""
        if value is None:
            return {}
        if isinstance(value, str):
            return {"http_proxy": value, "https_proxy": value}
        return value


@functools.cache
def load() -> PluginConfig:
    """The plugin-side config from the environment, read once per process."""
    package_name = os.environ.get(ENV_PACKAGE_NAME, "")
    data_dir = Path(os.environ.get(ENV_DATA_DIR) or _fallback_data_dir(package_name))
    fields = {
        **_config_json(),
        "data_dir": data_dir,
        "package_name": package_name,
        "package_version": os.environ.get(ENV_PACKAGE_VERSION, ""),
    }
    try:
        config = PluginConfig.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, item['loc']))}: {item['msg']}" for item in errors.error_items(exc)
        )
        raise errors.invalid_plugin_environment(ENV_CONFIG, problems) from exc
    if config.storage.path is None:
        storage = config.storage.model_copy(update={"path": str(data_dir / STORAGE_SUBDIR)})
        config = config.model_copy(update={"storage": storage})
    return config


def _config_json() -> dict[str, Any]:
    text = os.environ.get(ENV_CONFIG, "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.invalid_plugin_environment(ENV_CONFIG, f"not JSON ({exc.msg})") from exc
    if not isinstance(value, dict):
        raise errors.invalid_plugin_environment(ENV_CONFIG, "not a JSON object")
    return value


def _fallback_data_dir(package_name: str) -> Path:
    """Per-user (and per-package) directory under the temp dir, for runs outside the host."""
    owner = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"hiagent-plugin-data-{owner}" / (package_name or "_")


def _inside(directory: Path, filename: str) -> Path:
    """`directory/filename`, refusing names that are empty, absolute or resolve outside it."""
    if not filename or "\x00" in filename or "\\" in filename:
        raise errors.invalid_storage_filename(filename, "not a plain relative file name")
    if PurePosixPath(filename).is_absolute():
        raise errors.invalid_storage_filename(filename, "absolute paths are not allowed")
    base = directory.resolve()
    target = (base / filename).resolve()
    if target == base or not target.is_relative_to(base):
        raise errors.invalid_storage_filename(filename, "it resolves outside the storage dir")
    return target


def _chunks(
    data: bytes | bytearray | memoryview | BinaryIO | Iterable[bytes], length: int
) -> Iterator[bytes]:
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
