"""One distribution's plugins, loaded from its `hiagent.plugins` entry points; error mapping."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Final

from hiagent_shim.encode import safe_str
from hiagent_shim.report import failure

PACKAGE_ENV: Final = "HIAGENT_PACKAGE_NAME"
ENTRY_POINT_GROUP: Final = "hiagent.plugins"

PACKAGE_NOT_FOUND: Final = "PackageNotFound"
PLUGIN_IMPORT_FAILED: Final = "PluginImportFailed"
PLUGIN_ENTRY_NOT_FOUND: Final = "PluginEntryNotFound"
# What a plugin class must offer; the shim calls nothing else on it.
PLUGIN_CLASSMETHODS: Final = (
    "get_metadata",
    "run_plugin_tool",
    "run_plugin_tool_stream",
    "run_plugin_validate",
    "ping",
)


class ShimError(Exception):
    """An application error as it crosses the wire: `code`, `message`, `http_code`, `data`."""

    def __init__(self, code: str, message: str, *, http_code: int, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_code = http_code
        self.data = data


@dataclass(frozen=True)
class Package:
    """The distribution a shim serves and its plugin classes by entry-point name."""

    name: str
    version: str
    plugins: dict[str, Any]

    def plugin(self, name: str) -> Any:
        """The plugin class for entry point `name`, or `PluginEntryNotFound`."""
        try:
            return self.plugins[name]
        except KeyError:
            raise ShimError(
                PLUGIN_ENTRY_NOT_FOUND,
                f"plugin {name!r} not found in {self.name}; available: "
                + (", ".join(self.plugins) or "(none)"),
                http_code=404,
                data={"plugin": name, "available": list(self.plugins)},
            ) from None


def normalize(name: str) -> str:
    """PEP 503 normalisation: `HiAgent.Plugin_Time` → `hiagent-plugin-time`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def find_distribution(name: str) -> metadata.Distribution:
    """The installed distribution whose name normalises like `name`."""
    wanted = normalize(name)
    for dist in metadata.distributions():
        if normalize(dist.metadata["Name"] or "") == wanted:
            return dist
    raise ShimError(
        PACKAGE_NOT_FOUND,
        f"distribution {name!r} is not installed in {sys.prefix}",
        http_code=404,
        data={"package": name},
    )


def load_package(name: str | None) -> Package:
    """Import every plugin of distribution `name`; every failure is reported at once."""
    if not name:
        raise ShimError(
            PACKAGE_NOT_FOUND, f"{PACKAGE_ENV} is not set", http_code=404, data={"package": None}
        )
    dist = find_distribution(name)
    plugins: dict[str, Any] = {}
    failures: list[dict[str, str]] = []
    for ep in dist.entry_points.select(group=ENTRY_POINT_GROUP):
        try:
            plugins[ep.name] = _load(ep)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - any import failure is reported
            failure(f"plugin {ep.name!r} ({ep.value}) failed to import:", exc)
            failures.append(
                {"plugin": ep.name, "exception": type(exc).__name__, "message": safe_str(exc)}
            )
    if failures:
        first = failures[0]
        what = f"{first['exception']}: {first['message']}"
        raise ShimError(
            PLUGIN_IMPORT_FAILED,
            f"plugin {first['plugin']!r} failed to import: {what}",
            http_code=502,
            data={**first, "failures": failures},
        )
    return Package(name=dist.metadata["Name"], version=dist.version, plugins=plugins)


def _load(ep: metadata.EntryPoint) -> Any:
    plugin = ep.load()
    missing = [m for m in PLUGIN_CLASSMETHODS if not callable(getattr(plugin, m, None))]
    if missing:
        raise TypeError(f"{ep.value} is not a plugin class: it lacks {', '.join(missing)}")
    return plugin


def to_shim_error(exc: BaseException) -> ShimError:
    """Any exception as a wire error: forwarded if it carries code/message/http_code, else
    its class name and text (a placeholder when its `str()` raises). Never raises itself."""
    if isinstance(exc, ShimError):
        return exc
    code, message, http_code = _attr(exc, "code"), _attr(exc, "message"), _attr(exc, "http_code")
    if (
        isinstance(code, str)
        and isinstance(message, str)
        and isinstance(http_code, int)
        and not isinstance(http_code, bool)
    ):
        return ShimError(code, message, http_code=http_code, data=_attr(exc, "data"))
    return ShimError(type(exc).__name__, safe_str(exc), http_code=500)


def _attr(exc: BaseException, name: str) -> Any:
    """`exc.<name>`, or None when it is missing or a property of it raises."""
    try:
        return getattr(exc, name, None)
    except Exception:  # noqa: BLE001 - a plugin's property may raise anything
        return None
