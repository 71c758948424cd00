"""Plugin-side configuration the host passes in the environment, and the storage it names.

The host sets, for every plugin process:

- ``HIAGENT_PLUGIN_DATA_DIR``: a writable directory owned by this package;
- ``HIAGENT_PLUGIN_CONFIG``: optional JSON object, e.g.
  ``{"storage": {"backend": "local_path", "path": "..."}, "ssrf_proxy": "http://proxy:3128"}``;
- ``HIAGENT_PACKAGE_NAME`` / ``HIAGENT_PACKAGE_VERSION``.

`load()` reads them once (no file is needed). With none of them set it still works: data then
goes to a per-user directory under the system temp dir. `storage` is the original runtime's
shape (see `storage.py`) and any key in it this SDK does not know is an error; other
top-level keys are ignored, so that a newer host can still run a venv built with an older SDK.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hiagent_plugin_sdk import errors
from hiagent_plugin_sdk.storage import (
    LOCAL_PATH_BACKEND,
    LocalPathSettings,
    LocalPathStorage,
    ObjectStorage,
    S3Settings,
    StorageClient,
    StorageConfig,
)

__all__ = [
    "LOCAL_PATH_BACKEND",
    "LocalPathSettings",
    "LocalPathStorage",
    "ObjectStorage",
    "PluginConfig",
    "S3Settings",
    "SSRFProxy",
    "StorageClient",
    "StorageConfig",
    "load",
]

ENV_DATA_DIR: Final = "HIAGENT_PLUGIN_DATA_DIR"
ENV_CONFIG: Final = "HIAGENT_PLUGIN_CONFIG"
ENV_PACKAGE_NAME: Final = "HIAGENT_PACKAGE_NAME"
ENV_PACKAGE_VERSION: Final = "HIAGENT_PACKAGE_VERSION"
STORAGE_SUBDIR: Final = "storage"


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
    if config.storage.local_path.base_dir is None:
        local = LocalPathSettings(base_dir=str(data_dir / STORAGE_SUBDIR))
        config = config.model_copy(
            update={"storage": config.storage.model_copy(update={"local_path": local})}
        )
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
