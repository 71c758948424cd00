"""A plugin class's Metadata (from its packaged YAML, else from its code) and models, per class.

Nothing here runs at import: a class's `PluginSpec` is built on first use and cached on that
class only (a subclass gets its own). Whichever source decides the metadata, the models that
validate tool input and config are built from the method signatures.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import Callable
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError, create_model

from hiagent_plugin_sdk import errors
from hiagent_plugin_sdk.decorators import plugin_meta, tool_meta
from hiagent_plugin_sdk.schema import HttpError, Labels, Metadata, PackageInfo, ToolMetadata
from hiagent_plugin_sdk.signature import InputModel, init_model, method_models

OUTPUT_RESP_MODEL: Final = "OutputRespModel"
FEATURE_STREAM: Final = "stream"
FEATURE_AGENT_INTENTION: Final = "agent_intention"
UNKNOWN_VERSION: Final = "0.0.0"
_SDK_PACKAGE: Final = "hiagent_plugin_sdk"
_SPEC_ATTR: Final = "__hiagent_plugin_spec__"

logger = logging.getLogger(__name__)


class PluginSpec:
    """What the runtime needs about one plugin class: its metadata and validation models."""

    def __init__(
        self,
        cls: type,
        metadata: Metadata,
        config: InputModel | None,
        inputs: dict[str, InputModel] | None = None,
    ) -> None:
        self.cls = cls
        self.metadata = metadata
        self.config = config  # None: the class takes no config
        self._inputs: dict[str, InputModel] = dict(inputs or {})
        self._calls: dict[str, ToolCall] = {}

    def tool(self, name: str) -> ToolMetadata:
        """The metadata of tool `name`, or `ToolNotFound`."""
        found = self.metadata.tools.get(name)
        if found is None:
            raise errors.tool_not_found(name, self.metadata.tools)
        return found

    def method_input(self, tool: str, func_name: str) -> InputModel:
        """The input model built from the signature of method `func_name`."""
        cached = self._inputs.get(func_name)
        if cached is not None:
            return cached
        if not callable(getattr(self.cls, func_name, None)):
            reason = f"tool {tool!r} is implemented by {func_name!r}, which the plugin lacks"
            raise errors.tool_not_found(tool, self.metadata.tools, reason)
        built, _ = method_models(self.cls, func_name)
        self._inputs[func_name] = built
        return built

    def tool_call(self, tool: str) -> ToolCall:
        """How `run_plugin_tool` runs `tool`, found and checked on its first call, then kept
        (the metadata and the class do not change while the plugin runs)."""
        call = self._calls.get(tool)
        if call is None:
            func_name = self.tool(tool).func_name or tool
            model = self.method_input(tool, func_name)
            method = inspect.getattr_static(self.cls, func_name, None)
            if isinstance(method, staticmethod | classmethod):
                method = method.__func__
            call = ToolCall(func_name, model, method, inspect.iscoroutinefunction(method))
            self._calls[tool] = call
        return call


class ToolCall:
    """A tool's method name and input model, and whether the method (`function`, as the class
    defines it) is a coroutine function."""

    __slots__ = ("function", "is_async", "model", "name")

    def __init__(self, name: str, model: InputModel, function: Any, is_async: bool) -> None:
        self.name = name
        self.model = model
        self.function = function
        self.is_async = is_async


def plugin_spec(cls: type) -> PluginSpec:
    """The spec of `cls`, built on first use and kept in the class's own `__dict__`.

    Looking in `__dict__` (not `getattr`) is what keeps a subclass from inheriting it.
    """
    spec = cls.__dict__.get(_SPEC_ATTR)
    if not isinstance(spec, PluginSpec):
        spec = _load(cls)
        setattr(cls, _SPEC_ATTR, spec)
    return spec


def _load(cls: type) -> PluginSpec:
    packaged = read_packaged_metadata(cls)
    if packaged is None:
        spec = spec_from_code(cls)
    else:
        packaged.package_info = package_info(cls)  # the file's copy may be stale
        spec = PluginSpec(cls, packaged, config_model(cls))
    icon_uri: Callable[[], str] | None = getattr(cls, "_icon_uri", None)
    spec.metadata.icon = icon_uri() if icon_uri is not None else ""
    return spec


def metadata_filename(cls: type) -> str:
    return f"{plugin_name(cls)}_metadata.yaml"


def plugin_name(cls: type) -> str:
    return plugin_meta(cls).cn_name or cls.__name__


def module_dir(cls: type) -> Path | None:
    """The directory of the module that defines `cls`, when it lives in a file."""
    module = sys.modules.get(cls.__module__)
    filename = getattr(module, "__file__", None)
    return Path(filename).resolve().parent if filename else None


def read_packaged_metadata(cls: type) -> Metadata | None:
    """The `<name>_metadata.yaml` beside the plugin's module, if present and well-formed."""
    directory = module_dir(cls)
    if directory is None:
        return None
    path = directory / metadata_filename(cls)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        logger.warning("ignoring unreadable %s: %s", path, exc)
        return None
    import yaml  # type: ignore[import-untyped, unused-ignore]  # lazy: read once, if at all

    try:
        metadata = Metadata.model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as exc:
        logger.warning("ignoring malformed %s, building metadata from code: %s", path, exc)
        return None
    for key, tool in metadata.tools.items():
        tool.func_name = tool.func_name or key
    return metadata


def spec_from_code(cls: type) -> PluginSpec:
    """Metadata from the code alone, with the config model and every tool's input model."""
    meta = plugin_meta(cls)
    description = inspect.cleandoc(cls.__doc__ or "")
    config = config_model(cls)
    metadata = Metadata(
        name=plugin_name(cls),
        category=str(getattr(cls, "hiagent_category", "") or ""),
        description=description,
        metadata_path=metadata_filename(cls),
        labels=Labels(
            name_en=meta.en_name or None,
            name_zh_hans=meta.cn_name or None,
            description_en=description or None,
            description_zh_hans=description or None,
        ),
        config_schema={} if config is None else config.model.model_json_schema(),
        package_info=package_info(cls),
    )
    inputs: dict[str, InputModel] = {}
    for name in _tool_names(cls):
        metadata.tools[name], inputs[name] = _build_tool(cls, name)
    return PluginSpec(cls, metadata, config, inputs)


def _tool_names(cls: type) -> list[str]:
    names = getattr(cls, "hiagent_tools", None)
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"{cls.__qualname__}.hiagent_tools must be a list of method names")
    for name in names:
        if not callable(getattr(cls, name, None)):
            raise TypeError(f"{cls.__qualname__}.hiagent_tools lists {name!r}: no such method")
    return list(names)


def _build_tool(cls: type, name: str) -> tuple[ToolMetadata, InputModel]:
    method = getattr(cls, name)
    meta = tool_meta(method)
    if meta.stream_fn and not callable(getattr(cls, meta.stream_fn, None)):
        raise TypeError(f"{cls.__qualname__}.{name}: stream_fn {meta.stream_fn!r} is not a method")
    inputs, output = method_models(cls, name)
    response = create_model(OUTPUT_RESP_MODEL, data=(output, None), error=(HttpError, None))
    description = inspect.cleandoc(method.__doc__ or "")
    features = [FEATURE_AGENT_INTENTION] if meta.feat_runtime_intention else []
    if meta.stream_fn:
        features.append(FEATURE_STREAM)
    tool = ToolMetadata(
        name=name,
        description=description,
        labels=Labels(
            name_en=name,
            name_zh_hans=name,
            description_en=description or None,
            description_zh_hans=description or None,
        ),
        input_schema=inputs.model.model_json_schema(),
        output_schema=response.model_json_schema(),
        func_name=name,
        stream_func_name=meta.stream_fn or None,
        runtime_features=features,
    )
    return tool, inputs


def config_model(cls: type) -> InputModel | None:
    """The model of the config `__init__` takes, or None when the class has no own one."""
    init = config_init(cls)
    return None if init is None else init_model(init)


def config_init(cls: type) -> Callable[..., Any] | None:
    """The `__init__` that defines the config: the first in the MRO not from the SDK or object."""
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object or klass.__module__.split(".")[0] == _SDK_PACKAGE:
            return None
        return init  # type: ignore[no-any-return]
    return None


def package_info(cls: type) -> PackageInfo:
    """The plugin's top-level package and the version of the distribution that installed it."""
    top = cls.__module__.split(".")[0]
    return PackageInfo(name=top, version=_distribution_version(top))


@functools.cache
def _distribution_version(top_package: str) -> str:
    try:
        return importlib_metadata.version(top_package)
    except importlib_metadata.PackageNotFoundError:
        pass
    for dist in importlib_metadata.packages_distributions().get(top_package, []):
        try:
            return importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            continue
    return UNKNOWN_VERSION
