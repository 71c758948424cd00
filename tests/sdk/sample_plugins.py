"""Small real plugins the SDK tests drive in-process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Annotated, Any, ClassVar

from hiagent_plugin_sdk import (
    BasePlugin,
    BuiltinCategory,
    ConfigValidateMixin,
    HttpException,
    SecretField,
    ServerSentEvent,
    set_meta,
    set_tool_meta,
)
from pydantic import BaseModel, Field


class Point(BaseModel):
    x: int
    y: int


class Weather(BaseModel):
    city: str
    celsius: float


@set_meta(cn_name="天气", en_name="Weather")
class WeatherPlugin(BasePlugin, ConfigValidateMixin):
    """Looks up the weather.

    Second paragraph of the description.
    """

    hiagent_tools = ("forecast", "where", "shout", "describe", "scale", "fail", "chat")
    hiagent_category = BuiltinCategory.LifeAssistant

    def __init__(
        self,
        app_id: Annotated[str, Field(description="the application id")],
        token: Annotated[str, SecretField(title="token", description="API token")],
        region: str = "cn",
    ) -> None:
        self.app_id = app_id
        self.token = token
        self.region = region
        self.validated = False

    def _validate(self) -> None:
        if self.app_id == "reject":
            raise ValueError("app_id reject is not allowed")
        if self.app_id == "http":
            raise HttpException("QuotaExceeded", "no quota left", {"left": 0}, http_code=429)

    async def forecast(
        self,
        city: Annotated[str, Field(description="city name")],
        days: Annotated[int, Field(description="how many days")] = 1,
    ) -> Annotated[Weather, Field(description="the forecast")]:
        """Forecast the weather for a city."""
        await asyncio.sleep(0)
        return Weather(city=city, celsius=21.5 + days)

    def where(self, point: Point, *, label: str = "here") -> dict[str, Any]:
        """Echo where a point is (receives the raw JSON object)."""
        return {"type": type(point).__name__, "point": point, "label": label}

    @staticmethod
    def shout(text: str) -> str:
        return text.upper()

    @classmethod
    def describe(cls, **extra: Any) -> dict[str, Any]:
        """Any keys are welcome."""
        return {"cls": cls.__name__, "extra": extra}

    def scale(self, factor: float) -> dict[str, Any]:
        return {"factor": factor, "thread": threading.current_thread().name}

    def fail(self) -> None:
        raise LookupError("the tool itself failed")

    @set_tool_meta(stream_fn="chat_stream", feat_runtime_intention=True)
    async def chat(self, prompt: str, n: int = 2) -> str:
        """Chat about the weather."""
        return prompt

    async def chat_stream(self, prompt: str, n: int = 2) -> AsyncIterator[Any]:
        for i in range(n):
            yield ServerSentEvent(event="delta", data=f"{prompt}{i}")
        yield {"done": True, "region": self.region}


WEATHER_CFG: dict[str, Any] = {"app_id": "app", "token": "s3cret"}


class PlainPlugin(BasePlugin):
    hiagent_tools: ClassVar[Sequence[str]] = ("ping_tool", "count")

    def ping_tool(self):  # type: ignore[no-untyped-def]  # unannotated return on purpose
        return None

    @set_tool_meta(stream_fn="count_sync", feat_runtime_intention=False)
    def count(self, upto: int) -> int:
        return upto

    def count_sync(self, upto: int) -> Iterator[int]:
        yield from range(upto)


class ChildPlugin(PlainPlugin):
    """A subclass: its metadata is its own, not its parent's."""

    hiagent_tools = ("count",)


class FailingInitPlugin(BasePlugin):
    hiagent_tools = ("noop",)

    def __init__(self, url: str) -> None:
        if not url.startswith("https://"):
            raise ValueError("url must be https")
        if url == "https://http-exception":
            raise HttpException("Forbidden", "not this one", None, http_code=403)
        if url == "https://unreachable":
            raise ConnectionRefusedError("cannot connect to the service")
        if url == "https://validated":
            _Endpoint.model_validate({"port": "not a port"})

    def noop(self) -> None:
        return None


class _Endpoint(BaseModel):
    port: int


class _UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


class AsyncValidatePlugin(BasePlugin, ConfigValidateMixin):
    hiagent_tools = ("noop",)
    seen: ClassVar[list[str]] = []  # records _validate calls for the tests

    def __init__(self, key: str) -> None:
        self.key = key

    async def _validate(self) -> None:
        await asyncio.sleep(0)
        AsyncValidatePlugin.seen.append(self.key)
        if self.key == "bad":
            raise RuntimeError("key is bad")
        if self.key == "unprintable":
            raise _UnprintableError()

    def noop(self) -> None:
        return None
