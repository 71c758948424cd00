"""JSON for whatever a plugin returns, the way FastAPI's `jsonable_encoder` would make it."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import enum
import json
import pathlib
import uuid
from typing import Any, Final


def jsonable(obj: Any) -> Any:
    """The `default` hook of `json.dumps`: one step towards plain JSON values."""
    if callable(getattr(obj, "model_dump", None)):  # pydantic v2 models
        return obj.model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, datetime.date | datetime.time):  # datetime is a date
        return obj.isoformat()
    if isinstance(obj, datetime.timedelta):
        return obj.total_seconds()
    if isinstance(obj, uuid.UUID | decimal.Decimal | pathlib.PurePath):
        return str(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if isinstance(obj, bytes | bytearray | memoryview):
        raw = bytes(obj)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii")
    return str(obj)


# One encoder for every frame (json.dumps with options builds a new one per call).
_ENCODER: Final = json.JSONEncoder(
    default=jsonable, ensure_ascii=False, separators=(",", ":"), allow_nan=False
)


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON on one line; ValueError for NaN, infinities, cycles, odd keys, and
    for anything a value's own code raises on the way (`str()`, `model_dump()`, …)."""
    try:
        text = _ENCODER.encode(obj)
    except Exception as exc:
        raise ValueError(f"not JSON-serialisable: {describe(exc)}") from exc
    return text.encode("utf-8", errors="replace")  # lone surrogates become "?"


def describe(exc: BaseException) -> str:
    """`Class: message` of `exc`, with a placeholder when its `str()` itself fails."""
    return f"{type(exc).__name__}: {safe_str(exc)}"


def safe_str(obj: object) -> str:
    """`str(obj)`, or a placeholder naming its class when that raises or is no `str`."""
    try:
        return str(obj)  # str() itself refuses a __str__ that returns no string
    except Exception as exc:  # noqa: BLE001 - whatever a plugin's __str__ raises
        return f"<{type(obj).__name__}: str() failed with {type(exc).__name__}>"
