"""Every error the SDK raises on purpose: its code, its HTTP status and how it is built.

All of them are `schema.HttpException`s, so the host forwards code, message, data and status
verbatim. Validation errors list every bad field and never echo the caller's values (a
config value may be a secret).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from pydantic import ValidationError

from hiagent_plugin_sdk.schema import HttpException

TOOL_NOT_FOUND: Final = "ToolNotFound"
STREAM_NOT_SUPPORTED: Final = "StreamNotSupported"
INVALID_TOOL_INPUT: Final = "InvalidToolInput"
INVALID_CONFIG: Final = "InvalidConfig"
INVALID_STORAGE_FILENAME: Final = "InvalidStorageFilename"
STORAGE_BACKEND_UNSUPPORTED: Final = "StorageBackendUnsupported"
INVALID_STORAGE_CONFIG: Final = "InvalidStorageConfig"
STORAGE_UNAVAILABLE: Final = "StorageUnavailable"
STORAGE_REFUSED: Final = "StorageRefused"
INVALID_PLUGIN_ENVIRONMENT: Final = "InvalidPluginEnvironment"
MISSING_DEPENDENCY: Final = "MissingDependency"

# The fields of one reported problem; pydantic's `input`, `ctx` and `url` are left out.
ErrorItem = dict[str, Any]


class MissingDependency(HttpException, ImportError):
    """An optional dependency (an SDK extra) is not installed in the plugin's environment."""

    def __init__(self, message: str) -> None:
        super().__init__(MISSING_DEPENDENCY, message, None, 500)


def tool_not_found(tool: str, available: Iterable[str], reason: str = "") -> HttpException:
    names = list(available)
    message = reason or f"tool {tool!r} not found; available: {', '.join(names) or '(none)'}"
    return HttpException(TOOL_NOT_FOUND, message, {"tool": tool, "available": names}, http_code=404)


def stream_not_supported(tool: str, reason: str = "") -> HttpException:
    message = reason or f"tool {tool!r} does not support streaming"
    return HttpException(STREAM_NOT_SUPPORTED, message, {"tool": tool}, http_code=400)


def error_items(exc: ValidationError) -> list[ErrorItem]:
    """pydantic's errors as `{"loc", "msg", "type"}` items, without the offending values."""
    return [
        {"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]}
        for err in exc.errors()  # only these three keys are copied: no input, no context
    ]


def extra_items(raw: Mapping[str, Any], known: Iterable[str]) -> list[ErrorItem]:
    """One item per key of `raw` that is not a known parameter, in the caller's order."""
    allowed = set(known)
    return [
        {"loc": [key], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
        for key in raw
        if key not in allowed
    ]


def _summary(items: Sequence[ErrorItem]) -> str:
    parts = [f"{'.'.join(map(str, item['loc'])) or '(root)'}: {item['msg']}" for item in items]
    return "; ".join(parts)


def invalid_tool_input(tool: str, items: Sequence[ErrorItem]) -> HttpException:
    message = f"invalid input for tool {tool!r}: {_summary(items)}"
    return HttpException(INVALID_TOOL_INPUT, message, {"errors": list(items)}, http_code=422)


def invalid_config(items: Sequence[ErrorItem]) -> HttpException:
    message = f"invalid plugin config: {_summary(items)}"
    return HttpException(INVALID_CONFIG, message, {"errors": list(items)}, http_code=422)


def config_rejected(exc: BaseException) -> HttpException:
    """The plugin's `_validate()` refused the config; its reason is the message (its class
    name when the exception has no text, or its `str()` raises)."""
    try:
        message = str(exc) or type(exc).__name__
    except Exception:  # noqa: BLE001 - a plugin's __str__ may raise anything
        message = type(exc).__name__
    return HttpException(INVALID_CONFIG, message, {"exception": type(exc).__name__}, http_code=400)


def invalid_storage_filename(filename: str, reason: str) -> HttpException:
    return HttpException(
        INVALID_STORAGE_FILENAME,
        f"cannot store {filename!r}: {reason}",
        {"filename": filename},
        http_code=400,
    )


def storage_backend_unsupported(backend: str, known: Iterable[str]) -> HttpException:
    names = list(known)
    return HttpException(
        STORAGE_BACKEND_UNSUPPORTED,
        f"storage backend {backend!r} is not supported by this SDK; use one of {', '.join(names)}",
        {"backend": backend, "supported": names},
        http_code=500,
    )


def invalid_storage_config(reason: str) -> HttpException:
    return HttpException(
        INVALID_STORAGE_CONFIG, f"plugin storage is misconfigured: {reason}", None, http_code=500
    )


def storage_unavailable(filename: str, where: Mapping[str, str], reason: str) -> HttpException:
    """The object store could not be reached (refused, timed out, closed the connection)."""
    return HttpException(
        STORAGE_UNAVAILABLE,
        f"cannot store {filename!r}: the object store at {where['endpoint']} "
        f"(bucket {where['bucket']!r}) is unavailable: {reason}",
        {"filename": filename, **where},
        http_code=503,
    )


def storage_refused(
    filename: str, where: Mapping[str, str], code: str, reason: str
) -> HttpException:
    """The object store answered with an error (bad credentials, no such bucket, …)."""
    return HttpException(
        STORAGE_REFUSED,
        f"cannot store {filename!r}: the object store at {where['endpoint']} "
        f"(bucket {where['bucket']!r}) refused it: {code}: {reason}",
        {"filename": filename, **where, "store_error": code},
        http_code=502,
    )


def invalid_plugin_environment(variable: str, reason: str) -> HttpException:
    return HttpException(
        INVALID_PLUGIN_ENVIRONMENT,
        f"environment variable {variable} is invalid: {reason}",
        {"variable": variable},
        http_code=500,
    )
