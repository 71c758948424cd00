"""hiagent_plugin_sdk: write HiAgent plugins (classes, tools, config) that hiagent-host runs.

Importing it has no side effects beyond defining names: nothing is printed, no file is read,
logging is left as it is (only the `sensitive` logger is disabled) and aiohttp is not loaded.
"""

from __future__ import annotations

from hiagent_plugin_sdk.categories import BuiltinCategory
from hiagent_plugin_sdk.decorators import SecretField, set_meta, set_tool_meta
from hiagent_plugin_sdk.log import secretLogger
from hiagent_plugin_sdk.plugin import BasePlugin, ConfigValidateMixin
from hiagent_plugin_sdk.request import arequest, assrf_request, setup_ssrf_proxy_env
from hiagent_plugin_sdk.schema import HttpError, HttpException, Metadata, ServerSentEvent

__version__ = "1.0.0"

__all__ = [
    "BasePlugin",
    "BuiltinCategory",
    "ConfigValidateMixin",
    "HttpError",
    "HttpException",
    "Metadata",
    "SecretField",
    "ServerSentEvent",
    "arequest",
    "assrf_request",
    "secretLogger",
    "set_meta",
    "set_tool_meta",
    "setup_ssrf_proxy_env",
]
