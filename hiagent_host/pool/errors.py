"""The errors the pool raises, each a `HostError` with its stable code and HTTP status."""

from __future__ import annotations

from hiagent_host.errors import (
    PLUGIN_CRASHED,
    PLUGIN_START_FAILED,
    PLUGIN_UNAVAILABLE,
    POOL_EXHAUSTED,
    SHUTTING_DOWN,
    TOOL_TIMEOUT,
    HostError,
)


class ToolTimeout(HostError):
    """The call passed its deadline; `data`: timeout_s, cancel_acknowledged, killed."""

    code = TOOL_TIMEOUT
    http_status = 504


class PluginCrashed(HostError):
    """The child died during the call; `data`: exit_code, signal, stderr_tail, reason."""

    code = PLUGIN_CRASHED
    http_status = 502


class PluginStartFailed(HostError):
    """The child did not start or failed its handshake; `data` has the stderr tail."""

    code = PLUGIN_START_FAILED
    http_status = 502


class PluginUnavailable(HostError):
    """The package crash-looped and cools down, or its process was stopped under the call."""

    code = PLUGIN_UNAVAILABLE
    http_status = 503


class PoolExhausted(HostError):
    """Every process slot stayed busy for `acquire_timeout_s`; `data.retry_after_s`."""

    code = POOL_EXHAUSTED
    http_status = 503


class ShuttingDown(HostError):
    """The host is stopping: no new calls, and in-flight calls past the drain are cut."""

    code = SHUTTING_DOWN
    http_status = 503
