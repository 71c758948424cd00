"""What plugin authors annotate with: `set_meta`, `set_tool_meta` and `SecretField`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from pydantic import Field
from pydantic_core import PydanticUndefined

SECRET_KEY: Final = "x-hiagent-secret"
_PLUGIN_META_ATTR: Final = "__hiagent_plugin_meta__"
_TOOL_META_ATTR: Final = "__hiagent_tool_meta__"

T = TypeVar("T")


@dataclass(frozen=True)
class PluginMeta:
    """What `set_meta` recorded on a plugin class."""

    cn_name: str = ""
    en_name: str = ""


@dataclass(frozen=True)
class ToolMeta:
    """What `set_tool_meta` recorded on a tool method."""

    stream_fn: str = ""
    feat_runtime_intention: bool = False


def set_meta(*, cn_name: str = "", en_name: str = "") -> Callable[[T], T]:
    """Class decorator: the plugin's Chinese name (its metadata `name`) and English name."""

    def decorate(plugin_cls: T) -> T:
        setattr(plugin_cls, _PLUGIN_META_ATTR, PluginMeta(cn_name=cn_name, en_name=en_name))
        return plugin_cls

    return decorate


def set_tool_meta(*, stream_fn: str = "", feat_runtime_intention: bool = False) -> Callable[[T], T]:
    """Method decorator: the name of the tool's async-generator stream method, and whether
    the tool supports the agent-intention runtime feature."""

    def decorate(method: T) -> T:
        meta = ToolMeta(stream_fn=stream_fn, feat_runtime_intention=feat_runtime_intention)
        target = getattr(method, "__func__", method)  # static/class method objects
        setattr(target, _TOOL_META_ATTR, meta)
        return method

    return decorate


def SecretField(default: Any = PydanticUndefined, **kwargs: Any) -> Any:
    """pydantic's `Field`, marked `"x-hiagent-secret": true` in the JSON schema.

    The host keeps values of such fields out of every log, error message and metric.
    """
    extra = kwargs.pop("json_schema_extra", None)
    merged: dict[str, Any] = dict(extra) if isinstance(extra, dict) else {}
    merged[SECRET_KEY] = True
    return Field(default, json_schema_extra=merged, **kwargs)


def plugin_meta(plugin_cls: type) -> PluginMeta:
    """The `set_meta` record of a class (inherited from a decorated base), or the default."""
    meta = getattr(plugin_cls, _PLUGIN_META_ATTR, None)
    return meta if isinstance(meta, PluginMeta) else PluginMeta()


def tool_meta(method: object) -> ToolMeta:
    """The `set_tool_meta` record of a method (plain, static or class method), or the default."""
    target = getattr(method, "__func__", method)
    meta = getattr(target, _TOOL_META_ATTR, None)
    return meta if isinstance(meta, ToolMeta) else ToolMeta()
