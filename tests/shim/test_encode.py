"""Results become JSON the way FastAPI's jsonable_encoder makes them (in-process, stdlib only)."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import pathlib
import uuid

import pydantic
import pytest

from hiagent_shim.encode import dumps


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    when: datetime.date


class Model(pydantic.BaseModel):
    name: str
    at: datetime.datetime


def test_common_python_values_become_plain_json() -> None:
    value = {
        "datetime": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        "date": datetime.date(2024, 1, 2),
        "time": datetime.time(3, 4),
        "delta": datetime.timedelta(minutes=1, seconds=30),
        "uuid": uuid.UUID(int=1),
        "decimal": decimal.Decimal("1.50"),
        "path": pathlib.PurePosixPath("/tmp/x"),
        "enum": Color.RED,
        "set": {1},
        "frozenset": frozenset({2}),
        "tuple": (1, "a"),
        "text bytes": "汉字".encode(),
        "binary bytes": b"\xff\x00",
        "dataclass": Point(1, datetime.date(2024, 1, 2)),
        "model": Model(name="m", at=datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC)),
        "other": complex(1, 2),
    }
    assert json.loads(dumps(value)) == {
        "datetime": "2024-01-02T03:04:05+00:00",
        "date": "2024-01-02",
        "time": "03:04:00",
        "delta": 90.0,
        "uuid": "00000000-0000-0000-0000-000000000001",
        "decimal": "1.50",
        "path": "/tmp/x",
        "enum": "red",
        "set": [1],
        "frozenset": [2],
        "tuple": [1, "a"],
        "text bytes": "汉字",
        "binary bytes": "/wA=",
        "dataclass": {"x": 1, "when": "2024-01-02"},
        "model": {"name": "m", "at": "2024-01-02T00:00:00Z"},
        "other": "(1+2j)",
    }


def test_output_is_compact_utf8_on_one_line() -> None:
    assert dumps({"a": "汉\n字"}) == '{"a":"汉\\n字"}'.encode()


@pytest.mark.parametrize(
    "value",
    [float("nan"), {"x": float("inf")}, {(1, 2): "tuple key"}],
    ids=["nan", "inf", "tuple-key"],
)
def test_values_json_cannot_carry_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        dumps(value)


def test_a_lone_surrogate_cannot_break_the_utf8_of_a_frame() -> None:
    assert dumps("a\ud800b").decode("utf-8") == '"a?b"'
