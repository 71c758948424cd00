"""What a shim says about itself: the handshake result, and the `--describe` install probe."""

from __future__ import annotations

import json
import os
import platform
from typing import Any, Final

import hiagent_shim
from hiagent_shim.encode import dumps
from hiagent_shim.plugins import PACKAGE_ENV, Package, ShimError, load_package
from hiagent_shim.report import failure, flush_streams
from hiagent_shim.wire import Stdio

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
METADATA_FAILED: Final = "PluginMetadataFailed"


def handshake(package: Package) -> dict[str, Any]:
    """The `initialize` result: versions, pid, the package and its plugins."""
    return {
        "shim_version": hiagent_shim.__version__,
        "protocol_version": hiagent_shim.PROTOCOL_VERSION,
        "python_version": platform.python_version(),
        "pid": os.getpid(),
        "package": {"name": package.name, "version": package.version},
        "plugins": list(package.plugins),
    }


def describe(stdio: Stdio) -> int:
    """Load every plugin, write one JSON document on the wire fd, return the exit status."""
    try:
        package = load_package(os.environ.get(PACKAGE_ENV))
        metadata = {name: _metadata(name, cls) for name, cls in package.plugins.items()}
        doc: dict[str, Any] = {"ok": True, "handshake": handshake(package), "metadata": metadata}
    except ShimError as exc:
        doc = {"ok": False, "error": {"code": exc.code, "message": exc.message, "data": exc.data}}
    flush_streams()
    data = dumps(doc) + b"\n"
    while data:
        data = data[os.write(stdio.wire_out, data) :]
    return EXIT_OK if doc["ok"] else EXIT_FAILED


def _metadata(name: str, cls: Any) -> Any:
    """`cls.get_metadata()` as JSON values; a failure names the plugin."""
    try:
        return _plain(cls.get_metadata())
    except Exception as exc:
        failure(f"plugin {name!r}: get_metadata() failed:", exc)
        raise ShimError(
            METADATA_FAILED,
            f"plugin {name!r}: get_metadata() failed: {type(exc).__name__}: {exc}",
            http_code=502,
            data={"plugin": name, "exception": type(exc).__name__, "message": str(exc)},
        ) from exc


def _plain(value: Any) -> Any:
    """Round-trip through JSON so a failure to serialise surfaces here, per plugin."""
    return json.loads(dumps(value))
