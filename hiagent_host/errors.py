"""The host's one exception root and every stable error code clients branch on."""

from __future__ import annotations

from typing import Any, Final

# Error codes: stable identifiers carried in the HTTP envelope's `error.code`.
# Each is documented in docs/http-api.md. Tests assert on these, never on messages.
INTERNAL_ERROR: Final = "InternalError"
INVALID_REQUEST: Final = "InvalidRequest"
BAD_REQUEST: Final = "BadRequest"
PAYLOAD_TOO_LARGE: Final = "PayloadTooLarge"
UNAUTHORIZED: Final = "Unauthorized"
FORBIDDEN: Final = "Forbidden"
CONFIG_INVALID: Final = "ConfigInvalid"

PACKAGE_NOT_FOUND: Final = "PackageNotFound"
PLUGIN_ENTRY_NOT_FOUND: Final = "PluginEntryNotFound"
TOOL_NOT_FOUND: Final = "ToolNotFound"
STREAM_NOT_SUPPORTED: Final = "StreamNotSupported"
INVALID_TOOL_INPUT: Final = "InvalidToolInput"
INVALID_CONFIG: Final = "InvalidConfig"
ICON_NOT_FOUND: Final = "IconNotFound"

INVALID_PACKAGE: Final = "InvalidPackage"
ALREADY_INSTALLED: Final = "AlreadyInstalled"
DOWNLOAD_FAILED: Final = "DownloadFailed"
INSTALL_FAILED: Final = "InstallFailed"
PACKAGE_BUSY: Final = "PackageBusy"

TOOL_TIMEOUT: Final = "ToolTimeout"
PLUGIN_CRASHED: Final = "PluginCrashed"
PLUGIN_START_FAILED: Final = "PluginStartFailed"
PLUGIN_UNAVAILABLE: Final = "PluginUnavailable"
POOL_EXHAUSTED: Final = "PoolExhausted"
CANCELLED: Final = "Cancelled"
RESULT_TOO_LARGE: Final = "ResultTooLarge"
RESULT_NOT_SERIALIZABLE: Final = "ResultNotSerializable"
FRAME_TOO_LARGE: Final = "FrameTooLarge"
PROTOCOL_ERROR: Final = "ProtocolError"
SHUTTING_DOWN: Final = "ShuttingDown"

QUEUE_UNAVAILABLE: Final = "QueueUnavailable"
STORED_WHEEL_CORRUPT: Final = "StoredWheelCorrupt"
CLUSTER_MISCONFIGURED: Final = "ClusterMisconfigured"
JOB_NOT_FOUND: Final = "JobNotFound"
INVALID_JOB_STATE: Final = "InvalidJobState"

# Codes the plugin SDK raises inside a plugin process; the host forwards them as they come.
INVALID_STORAGE_FILENAME: Final = "InvalidStorageFilename"
STORAGE_BACKEND_UNSUPPORTED: Final = "StorageBackendUnsupported"
INVALID_STORAGE_CONFIG: Final = "InvalidStorageConfig"
STORAGE_UNAVAILABLE: Final = "StorageUnavailable"
STORAGE_REFUSED: Final = "StorageRefused"
INVALID_PLUGIN_ENVIRONMENT: Final = "InvalidPluginEnvironment"
MISSING_DEPENDENCY: Final = "MissingDependency"


class HostError(Exception):
    """An error with a stable `code`, the HTTP status it maps to, and JSON-able details."""

    code: str = INTERNAL_ERROR
    http_status: int = 500

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
        data: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        """The error object of the HTTP envelope (and of an SSE `error` event)."""
        return {
            "code": self.code,
            "message": self.message,
            "data": self.data,
            "http_code": self.http_status,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class ConfigError(HostError):
    """runtime.toml or an environment override is invalid (raised at start-up)."""

    code = CONFIG_INVALID
    http_status = 500


class NotFound(HostError):
    """Something the caller named does not exist."""

    http_status = 404


class InvalidInput(HostError):
    """The caller's request is malformed."""

    code = INVALID_REQUEST
    http_status = 422
