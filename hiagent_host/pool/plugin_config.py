"""The plugin-side config (`HIAGENT_PLUGIN_CONFIG`, JSON) a plugin process gets.

It is the operator's own object from `pool.env` / a package's `env` (e.g. `ssrf_proxy`), plus
`storage` from `[plugin_storage]` in the original runtime's shape, which the SDK reads. Each
package gets its own corner of the store: `<base_dir>/<package>/` on local storage, the key
prefix `<prefix><package>/` on an object store. The object store's credentials travel only
in this variable of the child's environment; nothing here is logged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from packaging.utils import canonicalize_name

from hiagent_host.config import PluginStorageConfig
from hiagent_host.packages import Dependency

# Where the SDK keeps a package's files when `[plugin_storage.local_path] base_dir` is unset.
DEFAULT_STORAGE_SUBDIR: Final = "storage"
# The distribution the SDK's object-store backends import (its `s3` extra).
S3_CLIENT: Final = "boto3"


def shared_storage_dir(storage: PluginStorageConfig, name: str) -> Path | None:
    """Package `name`'s directory under a configured `[plugin_storage.local_path] base_dir`
    (outside its data directory, so a sandbox must bind it writable), or None."""
    base = storage.local_path.base_dir
    return None if base is None else base / canonicalize_name(name)


def storage_section(storage: PluginStorageConfig, name: str, data_dir: Path) -> dict[str, Any]:
    """`storage` as the SDK reads it, for package `name` whose data directory is `data_dir`."""
    package = canonicalize_name(name)
    shared = shared_storage_dir(storage, name)
    section: dict[str, Any] = {
        "backend": storage.backend,
        "local_path": {"base_dir": str(shared or data_dir / DEFAULT_STORAGE_SUBDIR)},
    }
    if storage.object_store:
        s3 = storage.s3
        section["s3"] = {
            "ak": s3.ak,
            "sk": s3.sk,
            "endpoint": s3.endpoint,
            "region": s3.region,
            "bucket": s3.bucket,
            "public_endpoint": s3.public_endpoint,
            "path_style": s3.path_style,
            "signature_version": s3.signature_version,
            "ssl_verify": s3.ssl_verify,
            "prefix": f"{s3.prefix}{package}/",
            "presign_expiry_s": s3.presign_expiry_s,
            "connect_timeout_s": s3.connect_timeout_s,
            "read_timeout_s": s3.read_timeout_s,
        }
    return section


def plugin_config(
    storage: PluginStorageConfig, name: str, data_dir: Path, operator_json: str | None
) -> str:
    """The variable's value: the operator's object (checked by `load_config`) plus `storage`."""
    operator: dict[str, Any] = json.loads(operator_json) if operator_json else {}
    return json.dumps(operator | {"storage": storage_section(storage, name, data_dir)})


def has_s3_client(dependencies: Iterable[Dependency]) -> bool:
    """Whether a venv holding `dependencies` has the object-store backends' client."""
    return any(canonicalize_name(d.name) == S3_CLIENT for d in dependencies)
