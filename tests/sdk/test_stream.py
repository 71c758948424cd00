"""run_plugin_tool_stream: eager checks, then the stream function's async generator."""

from __future__ import annotations

import inspect

import pytest
from hiagent_plugin_sdk import HttpException, ServerSentEvent

from tests.sdk.sample_plugins import WEATHER_CFG, PlainPlugin, WeatherPlugin


def test_stream_returns_an_async_generator_without_awaiting() -> None:
    stream = WeatherPlugin.run_plugin_tool_stream("chat", {"prompt": "p"}, WEATHER_CFG)
    assert inspect.isasyncgen(stream)


@pytest.mark.anyio
async def test_stream_yields_what_the_stream_function_yields() -> None:
    cfg = {**WEATHER_CFG, "region": "eu"}
    stream = WeatherPlugin.run_plugin_tool_stream("chat", {"prompt": "p", "n": 2}, cfg)
    items = [item async for item in stream]
    assert items == [
        ServerSentEvent(event="delta", data="p0"),
        ServerSentEvent(event="delta", data="p1"),
        {"done": True, "region": "eu"},
    ]


@pytest.mark.anyio
async def test_a_sync_generator_stream_function_is_adapted() -> None:
    stream = PlainPlugin.run_plugin_tool_stream("count", {"upto": 3}, None)
    assert [item async for item in stream] == [0, 1, 2]


def test_tool_without_stream_function_is_stream_not_supported() -> None:
    with pytest.raises(HttpException) as caught:
        WeatherPlugin.run_plugin_tool_stream("forecast", {"city": "x"}, WEATHER_CFG)
    assert (caught.value.code, caught.value.http_code) == ("StreamNotSupported", 400)


def test_unknown_stream_tool_is_tool_not_found_before_returning() -> None:
    with pytest.raises(HttpException) as caught:
        WeatherPlugin.run_plugin_tool_stream("nope", {}, WEATHER_CFG)
    assert caught.value.code == "ToolNotFound"


def test_bad_stream_input_is_invalid_tool_input_before_returning() -> None:
    with pytest.raises(HttpException) as caught:
        WeatherPlugin.run_plugin_tool_stream("chat", {"n": "x"}, WEATHER_CFG)
    assert caught.value.code == "InvalidToolInput"
    assert [item["loc"] for item in caught.value.data["errors"]] == [["prompt"], ["n"]]


def test_bad_stream_config_is_invalid_config_before_returning() -> None:
    with pytest.raises(HttpException) as caught:
        WeatherPlugin.run_plugin_tool_stream("chat", {"prompt": "p"}, {"app_id": "a"})
    assert caught.value.code == "InvalidConfig"


def test_server_sent_event_dumps_without_null_fields() -> None:
    assert ServerSentEvent(data="x").model_dump(mode="json") == {"data": "x"}
    assert ServerSentEvent(event="e", data="d", id="1", retry=5).model_dump(mode="json") == {
        "event": "e",
        "data": "d",
        "id": "1",
        "retry": 5,
    }
