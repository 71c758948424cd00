"""The historic `hiagent_plugin_sdk.v1` import path, kept for plugins that still use it."""

from __future__ import annotations

from hiagent_plugin_sdk.categories import BuiltinCategory
from hiagent_plugin_sdk.decorators import SecretField, set_meta, set_tool_meta
from hiagent_plugin_sdk.plugin import BasePlugin, ConfigValidateMixin

__all__ = [
    "BasePlugin",
    "BuiltinCategory",
    "ConfigValidateMixin",
    "SecretField",
    "set_meta",
    "set_tool_meta",
]
