"""`BasePlugin` and `ConfigValidateMixin`: the classmethods the host's shim calls on a plugin.

The shim calls only `get_metadata`, `run_plugin_tool`, `run_plugin_tool_stream`,
`run_plugin_validate` and `ping`. Before anything runs, the tool name, the config and the
input are checked (every bad field reported at once, as an `HttpException`); the plugin then
receives the caller's raw JSON values. Sync methods run on the event loop's default executor,
coroutines are awaited, and whatever a tool raises propagates unchanged.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final

from pydantic import ValidationError

from hiagent_plugin_sdk import errors
from hiagent_plugin_sdk.metadata import PluginSpec, module_dir, plugin_spec
from hiagent_plugin_sdk.schema import META_VERSION, HttpException, Metadata
from hiagent_plugin_sdk.signature import InputModel
from hiagent_plugin_sdk.utils import gen_metadata, run_known, run_maybe_async

ICON_FILENAME: Final = "icon.png"


class ConfigValidateMixin:
    """Mix into a plugin and implement `_validate(self)` (sync or async).

    `run_plugin_validate` calls it on an instance built from the caller's config; raise to
    reject the config (the exception's text is the reason the caller sees, as an
    `InvalidConfig` 400), or raise an `HttpException` to choose the error yourself.
    """

    def _validate(self) -> Any:
        return None


class BasePlugin:
    """Base class of every plugin. Its docstring is the plugin's description.

    Subclasses list their tool methods in `hiagent_tools` and may set `hiagent_category`;
    the parameters of their own `__init__` (if any) are the plugin's config.
    """

    meta_version: ClassVar[str] = META_VERSION
    hiagent_tools: ClassVar[Sequence[str]]
    hiagent_category: ClassVar[str] = ""

    @classmethod
    def _icon_uri(cls) -> str:
        """A `file://` URI of `icon.png` beside the plugin's module, or "" when there is none."""
        directory = module_dir(cls)
        icon = directory / ICON_FILENAME if directory is not None else None
        return icon.as_uri() if icon is not None and icon.is_file() else ""

    @classmethod
    def get_metadata(cls) -> Metadata:
        """The plugin's metadata: from its packaged YAML when readable, else from the code."""
        return plugin_spec(cls).metadata

    @classmethod
    async def run_plugin_tool(cls, tool: str, input: Any = None, cfg: Any = None) -> Any:
        """Check, then run tool `tool` with `**input` on an instance built from `cfg`."""
        spec = plugin_spec(cls)
        call = spec.tool_call(tool)
        config = _checked_config(spec, cfg)
        kwargs = _checked_input(tool, call.model, input)
        instance = _construct(spec, config)
        method = getattr(instance, call.name)
        if getattr(method, "__func__", method) is not call.function:
            return await run_maybe_async(method, **kwargs)  # the instance has its own
        return await run_known(method, call.is_async, **kwargs)

    @classmethod
    def run_plugin_tool_stream(
        cls, tool: str, input: Any = None, cfg: Any = None
    ) -> AsyncIterator[Any]:
        """Check everything now, then return the async generator `<stream_fn>(**input)`."""
        spec = plugin_spec(cls)
        meta = spec.tool(tool)
        stream_name = meta.stream_func_name
        if not stream_name:
            raise errors.stream_not_supported(tool)
        if not callable(getattr(cls, stream_name, None)):
            reason = f"tool {tool!r} streams with {stream_name!r}, which the plugin lacks"
            raise errors.stream_not_supported(tool, reason)
        func_name = meta.func_name or tool
        model = spec.method_input(
            tool, func_name if callable(getattr(cls, func_name, None)) else stream_name
        )
        config = _checked_config(spec, cfg)
        kwargs = _checked_input(tool, model, input)
        instance = _construct(spec, config)
        return _async_items(getattr(instance, stream_name)(**kwargs), stream_name)

    @classmethod
    async def run_plugin_validate(cls, cfg: Any = None) -> None:
        """Build an instance from `cfg` and, with `ConfigValidateMixin`, call `_validate()`."""
        spec = plugin_spec(cls)
        instance = _construct(spec, _checked_config(spec, cfg))
        if not isinstance(instance, ConfigValidateMixin):
            return
        try:
            await run_maybe_async(instance._validate)
        except HttpException:
            raise
        except Exception as exc:
            raise errors.config_rejected(exc) from exc

    @classmethod
    def ping(cls) -> str:
        return "pong"

    @classmethod
    def _gen_metadata(cls, path: Path | None = None) -> Path:
        """Write the packaged metadata YAML from the code (see `utils.gen_metadata`)."""
        return gen_metadata(cls, path)


def _problems(model: InputModel | None, raw: Any) -> list[errors.ErrorItem]:
    """Every way `raw` fails `model` (None: no parameters), unknown keys included."""
    if not isinstance(raw, dict):
        return [{"loc": [], "msg": "Input should be a JSON object", "type": "dict_type"}]
    if model is None:
        return errors.extra_items(raw, ()) if raw else []
    items: list[errors.ErrorItem] = []
    try:
        model.model.model_validate(raw)
    except ValidationError as exc:
        items = errors.error_items(exc)
    if not model.allows_extra:
        items += errors.extra_items(raw, model.params)
    return items


def _checked_input(tool: str, model: InputModel, raw: Any) -> dict[str, Any]:
    raw = {} if raw is None else raw
    problems = _problems(model, raw)
    if problems:
        raise errors.invalid_tool_input(tool, problems)
    return dict(raw)


def _checked_config(spec: PluginSpec, cfg: Any) -> dict[str, Any]:
    raw = {} if cfg is None else cfg
    problems = _problems(spec.config, raw)
    if problems:
        raise errors.invalid_config(problems)
    return dict(raw)


def _construct(spec: PluginSpec, config: dict[str, Any]) -> Any:
    """`cls(**config)`. A pydantic `ValidationError` from the constructor is `InvalidConfig`
    (422, every bad field); anything else it raises (a network error while connecting, …)
    propagates with its own class, as the original runtime did."""
    try:
        return spec.cls(**config)
    except ValidationError as exc:
        raise errors.invalid_config(errors.error_items(exc)) from exc


def _async_items(result: Any, stream_name: str) -> AsyncIterator[Any]:
    """The stream function's result as an async iterator (sync iterables are adapted)."""
    if isinstance(result, AsyncIterator):
        return result
    if isinstance(result, AsyncIterable):
        return aiter(result)
    if isinstance(result, Iterable) and not isinstance(result, str | bytes | dict):
        return _iterate_in_executor(iter(result))
    if inspect.iscoroutine(result):
        result.close()
    raise TypeError(f"stream function {stream_name!r} must be an async generator")


async def _iterate_in_executor(items: Iterator[Any]) -> AsyncIterator[Any]:
    """Drive a sync iterator on the default executor, one item per hop."""
    done = object()
    while (item := await asyncio.to_thread(next, items, done)) is not done:
        yield item
