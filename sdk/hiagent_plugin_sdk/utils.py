"""Helpers for plugin authors: signature schemas, the metadata YAML, running maybe-async code."""

from __future__ import annotations

import asyncio
import inspect
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hiagent_plugin_sdk.metadata import metadata_filename, module_dir, spec_from_code
from hiagent_plugin_sdk.request import arequest, assrf_request
from hiagent_plugin_sdk.schema import Labels
from hiagent_plugin_sdk.signature import get_fn_schema

__all__ = ["arequest", "assrf_request", "gen_metadata", "get_fn_schema", "run_maybe_async"]


async def run_maybe_async(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Await `fn(...)` if it is a coroutine function, else run it on the default executor."""
    return await run_known(fn, inspect.iscoroutinefunction(fn), *args, **kwargs)


async def run_known(fn: Callable[..., Any], is_async: bool, /, *args: Any, **kwargs: Any) -> Any:
    """`run_maybe_async` for a caller that knows already whether `fn` is a coroutine function."""
    if is_async:
        result = await fn(*args, **kwargs)
    else:
        result = await asyncio.to_thread(fn, *args, **kwargs)
    if inspect.isawaitable(result):  # a sync wrapper that returned a coroutine
        result = await result
    return result


def gen_metadata(plugin_cls: type, path: Path | str | None = None) -> Path:
    """Write `<name>_metadata.yaml` for `plugin_cls`, built from its code; return the path.

    The default path is beside the plugin's module, where `get_metadata()` looks for it.
    Labels already in an existing file (hand-written translations) are kept wherever the
    code gives none. The file is replaced atomically.
    """
    if path is None:
        directory = module_dir(plugin_cls)
        if directory is None:
            raise ValueError(f"{plugin_cls.__qualname__} has no module file; pass a path")
        path = directory / metadata_filename(plugin_cls)
    target = Path(path)
    metadata = spec_from_code(plugin_cls).metadata
    metadata.icon = ""  # resolved at run time by _icon_uri()
    previous = _read_yaml(target)
    _keep_labels(metadata.labels, previous.get("labels"))
    previous_tools = previous.get("tools")
    for name, tool in metadata.tools.items():
        if isinstance(previous_tools, dict) and isinstance(previous_tools.get(name), dict):
            _keep_labels(tool.labels, previous_tools[name].get("labels"))
    import yaml  # type: ignore[import-untyped, unused-ignore]  # lazy: rarely needed

    text = yaml.safe_dump(metadata.model_dump(mode="json"), allow_unicode=True, sort_keys=False)
    _write_atomically(target, text)
    return target


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml  # type: ignore[import-untyped, unused-ignore]  # lazy: rarely needed

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _keep_labels(labels: Labels, previous: Any) -> None:
    if not isinstance(previous, dict):
        return
    for field in Labels.model_fields:
        old = previous.get(field)
        if getattr(labels, field) is None and isinstance(old, str):
            setattr(labels, field, old)


def _write_atomically(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        Path(temp).chmod(0o644)
        Path(temp).replace(target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
