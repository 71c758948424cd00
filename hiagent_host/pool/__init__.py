"""Plugin child processes: spawn, handshake, calls, deadlines, crashes, eviction, stop ladder."""

from hiagent_host.pool.child import ChildState
from hiagent_host.pool.errors import (
    PluginCrashed,
    PluginStartFailed,
    PluginUnavailable,
    PoolExhausted,
    ShuttingDown,
    ToolTimeout,
)
from hiagent_host.pool.pool import Pool, PoolStats, ProcessInfo

__all__ = [
    "ChildState",
    "PluginCrashed",
    "PluginStartFailed",
    "PluginUnavailable",
    "Pool",
    "PoolExhausted",
    "PoolStats",
    "ProcessInfo",
    "ShuttingDown",
    "ToolTimeout",
]
