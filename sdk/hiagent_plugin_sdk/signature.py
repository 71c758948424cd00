"""Turn a signature into pydantic models: parameters (`InModel`) and return type (`OutModel`).

A parameter must be annotated and passable by keyword; `*args` and positional-only
parameters are refused with a `TypeError` naming the function; `**kwargs` lets the model
accept extra keys (`additionalProperties: true`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, RootModel, create_model
from pydantic_core import PydanticUndefined

IN_MODEL: Final = "InModel"
OUT_MODEL: Final = "OutModel"


@dataclass(frozen=True)
class InputModel:
    """The model of a callable's parameters, and which keys it accepts."""

    model: type[BaseModel]
    params: tuple[str, ...]
    allows_extra: bool


def get_fn_schema(
    fn: Callable[..., Any], cls: type | None = None, ignore_return_not_set: bool = True
) -> tuple[type[BaseModel], type[RootModel[Any]]]:
    """The input and output models of `fn`.

    With `cls`, `fn` is taken as defined on that class: the first parameter of an instance
    or class method (`self`/`cls`) is skipped, that of a static method is not.
    """
    signature = _signature(fn)
    skip_first = cls is not None and not inspect.ismethod(fn) and not _is_static(cls, fn)
    inputs = input_model(fn, signature, skip_first=skip_first)
    return inputs.model, output_model(fn, signature, require_return=not ignore_return_not_set)


def method_models(cls: type, attr: str) -> tuple[InputModel, type[RootModel[Any]]]:
    """The models of the method named `attr` on `cls` (instance, class or static)."""
    fn = getattr(cls, attr)
    signature = _signature(fn)
    skip_first = not inspect.ismethod(fn) and not _is_static(cls, fn, attr)
    return input_model(fn, signature, skip_first=skip_first), output_model(fn, signature)


def init_model(init: Callable[..., Any]) -> InputModel:
    """The model of an `__init__`'s parameters (after `self`)."""
    return input_model(init, _signature(init), skip_first=True)


def input_model(
    fn: Callable[..., Any], signature: inspect.Signature, *, skip_first: bool
) -> InputModel:
    params = list(signature.parameters.values())[1 if skip_first else 0 :]
    where = _qualname(fn)
    fields: dict[str, Any] = {}
    names: list[str] = []
    allows_extra = False
    for param in params:
        if param.kind is param.VAR_POSITIONAL:
            raise TypeError(f"{where}: *{param.name} is not supported; use named parameters")
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(f"{where}: parameter {param.name!r} is positional-only")
        if param.kind is param.VAR_KEYWORD:
            allows_extra = True
            continue
        if param.annotation is param.empty:
            raise TypeError(f"{where}: parameter {param.name!r} has no type annotation")
        # PydanticUndefined, not `...`: older pydantic 2.x mishandles `...` with Annotated.
        default = PydanticUndefined if param.default is param.empty else param.default
        field_name, annotation = _field(param.name, param.annotation, len(names))
        fields[field_name] = (annotation, default)
        names.append(param.name)
    config = ConfigDict(protected_namespaces=(), extra="allow" if allows_extra else "ignore")
    model: type[BaseModel] = create_model(IN_MODEL, __config__=config, **fields)
    return InputModel(model=model, params=tuple(names), allows_extra=allows_extra)


def output_model(
    fn: Callable[..., Any], signature: inspect.Signature, *, require_return: bool = False
) -> type[RootModel[Any]]:
    returns = signature.return_annotation
    if returns is signature.empty:
        if require_return:
            raise TypeError(f"{_qualname(fn)}: the return type is not annotated")
        returns = None
    base: type[RootModel[Any]] = RootModel[returns]  # type: ignore[valid-type]
    model: type[RootModel[Any]] = create_model(OUT_MODEL, __base__=base)
    return model


def _field(name: str, annotation: Any, index: int) -> tuple[str, Any]:
    """The model field for a parameter; names that clash with BaseModel go by an alias."""
    if not name.startswith("_") and not hasattr(BaseModel, name):
        return name, annotation
    return f"param_{index}", Annotated[annotation, Field(alias=name)]


def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    try:
        return inspect.signature(fn, eval_str=True)
    except (NameError, SyntaxError, TypeError):
        # A string annotation naming something the module cannot see; let pydantic try.
        return inspect.signature(fn)


def _is_static(cls: type, fn: Callable[..., Any], attr: str | None = None) -> bool:
    name = attr or str(getattr(fn, "__name__", ""))
    return isinstance(inspect.getattr_static(cls, name, None), staticmethod)


def _qualname(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
