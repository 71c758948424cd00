"""What a shim says about itself: the handshake result, and the `--describe` install probe.

`--describe --wait` is the same probe started ahead of the install it checks: it imports the
SDK (the slow part of every probe) while the host is still installing the plugin, then waits
for one line on the wire. `go` means the venv is complete: the import caches are dropped and
the plugins described as usual. Anything else, or EOF, means the host gave up: it exits 0
without a word.
"""

from __future__ import annotations

import contextlib
import importlib
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
# What `--describe --wait` imports while it waits: what every plugin imports first.
PRELOAD_MODULE: Final = "hiagent_plugin_sdk"
GO: Final = b"go"


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


def describe(stdio: Stdio, *, wait: bool = False) -> int:
    """Load every plugin, write one JSON document on the wire fd, return the exit status."""
    if wait and not _preload_and_wait(stdio.wire_in):
        return EXIT_OK
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


def _preload_and_wait(wire_in: int) -> bool:
    """Import the SDK, then block until the host's line: whether it said `go`."""
    # Only a warm-up: a failure here is met again, and reported, when the plugins load.
    with contextlib.suppress(Exception):
        importlib.import_module(PRELOAD_MODULE)
    line = bytearray()
    while b"\n" not in line and (chunk := os.read(wire_in, 64)):
        line += chunk
    if line.strip() != GO:
        return False
    importlib.invalidate_caches()  # the plugin and its dependencies arrived after start-up
    return True


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
