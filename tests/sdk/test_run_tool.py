"""run_plugin_tool: how tools are called, and every error the SDK raises on the way."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hiagent_plugin_sdk import BasePlugin, HttpException

from tests.sdk.sample_plugins import WEATHER_CFG, FailingInitPlugin, PlainPlugin, WeatherPlugin


@pytest.mark.anyio
async def test_async_tool_is_awaited_with_the_input() -> None:
    result = await WeatherPlugin.run_plugin_tool(
        "forecast", {"city": "Paris", "days": 2}, WEATHER_CFG
    )
    assert result.model_dump() == {"city": "Paris", "celsius": 23.5}


@pytest.mark.anyio
async def test_tool_receives_the_raw_json_values_not_models() -> None:
    point = {"x": 1, "y": 2}
    result = await WeatherPlugin.run_plugin_tool("where", {"point": point}, WEATHER_CFG)
    assert result == {"type": "dict", "point": point, "label": "here"}


@pytest.mark.anyio
async def test_keyword_only_params_are_passed_by_name() -> None:
    result = await WeatherPlugin.run_plugin_tool(
        "where", {"point": {"x": 1, "y": 2}, "label": "there"}, WEATHER_CFG
    )
    assert result["label"] == "there"


@pytest.mark.anyio
async def test_static_and_class_method_tools_run() -> None:
    assert await WeatherPlugin.run_plugin_tool("shout", {"text": "hi"}, WEATHER_CFG) == "HI"
    described = await WeatherPlugin.run_plugin_tool("describe", {"a": 1, "b": [2]}, WEATHER_CFG)
    assert described == {"cls": "WeatherPlugin", "extra": {"a": 1, "b": [2]}}


def test_sync_tool_runs_on_the_loops_default_executor() -> None:
    async def call_with_shim_pool() -> Any:
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="shim-pool")
        )
        return await WeatherPlugin.run_plugin_tool("scale", {"factor": 2}, WEATHER_CFG)

    result = asyncio.run(call_with_shim_pool())  # a loop of its own: the executor dies with it
    assert result["factor"] == 2
    assert result["thread"].startswith("shim-pool")
    assert result["thread"] != threading.current_thread().name


@pytest.mark.anyio
async def test_null_cfg_constructs_a_plugin_without_config() -> None:
    assert await PlainPlugin.run_plugin_tool("count", {"upto": 3}, None) == 3
    assert await PlainPlugin.run_plugin_tool("ping_tool", None, {}) is None


@pytest.mark.anyio
async def test_params_named_like_basemodel_attributes_are_passed_through() -> None:
    class Clashing(BasePlugin):
        hiagent_tools = ("fetch",)

        def fetch(self, json: str, schema: int = 0) -> list[Any]:
            return [json, schema]

    assert await Clashing.run_plugin_tool("fetch", {"json": "j", "schema": 3}, None) == ["j", 3]


@pytest.mark.anyio
async def test_unknown_tool_is_tool_not_found_listing_the_tools() -> None:
    with pytest.raises(HttpException) as caught:
        await WeatherPlugin.run_plugin_tool("nope", {}, WEATHER_CFG)
    assert caught.value.code == "ToolNotFound"
    assert caught.value.http_code == 404
    assert caught.value.data == {"tool": "nope", "available": list(WeatherPlugin.hiagent_tools)}


@pytest.mark.anyio
async def test_bad_input_is_invalid_tool_input_listing_every_field() -> None:
    with pytest.raises(HttpException) as caught:
        await WeatherPlugin.run_plugin_tool(
            "forecast", {"days": "many", "color": "red"}, WEATHER_CFG
        )
    error = caught.value
    assert (error.code, error.http_code) == ("InvalidToolInput", 422)
    assert error.data == {
        "errors": [
            {"loc": ["city"], "msg": "Field required", "type": "missing"},
            {
                "loc": ["days"],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
                "type": "int_parsing",
            },
            {"loc": ["color"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"},
        ]
    }


@pytest.mark.anyio
async def test_nested_model_errors_carry_the_full_location() -> None:
    with pytest.raises(HttpException) as caught:
        await WeatherPlugin.run_plugin_tool("where", {"point": {"x": "a"}}, WEATHER_CFG)
    locs = [item["loc"] for item in caught.value.data["errors"]]
    assert locs == [["point", "x"], ["point", "y"]]


@pytest.mark.anyio
async def test_input_that_is_not_an_object_is_invalid_tool_input() -> None:
    with pytest.raises(HttpException) as caught:
        await WeatherPlugin.run_plugin_tool("shout", ["hi"], WEATHER_CFG)
    assert caught.value.code == "InvalidToolInput"


@pytest.mark.anyio
async def test_bad_config_is_invalid_config_listing_every_field_without_values() -> None:
    cfg = {"token": 12345, "region": ["x"], "colour": "red"}
    with pytest.raises(HttpException) as caught:
        await WeatherPlugin.run_plugin_tool("shout", {"text": "x"}, cfg)
    error = caught.value
    assert (error.code, error.http_code) == ("InvalidConfig", 422)
    assert [(item["loc"], item["type"]) for item in error.data["errors"]] == [
        (["app_id"], "missing"),
        (["token"], "string_type"),
        (["region"], "string_type"),
        (["colour"], "extra_forbidden"),
    ]
    assert "12345" not in error.message
    assert "12345" not in repr(error.data)


@pytest.mark.anyio
async def test_null_cfg_for_a_plugin_that_needs_config_is_invalid_config() -> None:
    with pytest.raises(HttpException) as caught:
        await WeatherPlugin.run_plugin_tool("shout", {"text": "x"}, None)
    assert caught.value.code == "InvalidConfig"
    assert [item["loc"] for item in caught.value.data["errors"]] == [["app_id"], ["token"]]


@pytest.mark.anyio
async def test_config_for_a_plugin_without_config_is_invalid_config() -> None:
    with pytest.raises(HttpException) as caught:
        await PlainPlugin.run_plugin_tool("count", {"upto": 1}, {"unexpected": 1})
    assert caught.value.code == "InvalidConfig"
    assert caught.value.http_code == 422


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("url", "exception"),
    [("http://x", ValueError), ("https://unreachable", ConnectionRefusedError)],
)
async def test_a_constructor_error_keeps_its_exception_class(
    url: str, exception: type[Exception]
) -> None:
    with pytest.raises(exception):
        await FailingInitPlugin.run_plugin_tool("noop", {}, {"url": url})


@pytest.mark.anyio
async def test_a_validation_error_in_the_constructor_is_invalid_config_422() -> None:
    with pytest.raises(HttpException) as caught:
        await FailingInitPlugin.run_plugin_tool("noop", {}, {"url": "https://validated"})
    error = caught.value
    assert (error.code, error.http_code) == ("InvalidConfig", 422)
    assert error.data == {
        "errors": [{"loc": ["port"], "msg": error.data["errors"][0]["msg"], "type": "int_parsing"}]
    }
    assert "not a port" not in error.message  # never the caller's value


@pytest.mark.anyio
async def test_constructor_http_exception_passes_through_unchanged() -> None:
    with pytest.raises(HttpException) as caught:
        await FailingInitPlugin.run_plugin_tool("noop", {}, {"url": "https://http-exception"})
    assert (caught.value.code, caught.value.http_code) == ("Forbidden", 403)


@pytest.mark.anyio
async def test_tool_exception_propagates_unchanged() -> None:
    with pytest.raises(LookupError, match="the tool itself failed"):
        await WeatherPlugin.run_plugin_tool("fail", {}, WEATHER_CFG)


def test_http_exception_carries_its_fields_and_reads_well() -> None:
    error = HttpException("Teapot", "short and stout", {"k": 1}, http_code=418)
    assert (error.code, error.message, error.data, error.http_code) == (
        "Teapot",
        "short and stout",
        {"k": 1},
        418,
    )
    assert str(error) == "Teapot: short and stout"
    assert error.to_error().model_dump() == {
        "code": "Teapot",
        "message": "short and stout",
        "data": {"k": 1},
        "http_code": 418,
    }
    assert HttpException("X", "y").http_code == 500


def test_ping_is_pong() -> None:
    assert WeatherPlugin.ping() == "pong"


@pytest.mark.anyio
async def test_every_call_is_checked_even_once_the_tool_is_known() -> None:
    good = {"city": "Paris", "days": 2}
    await WeatherPlugin.run_plugin_tool("forecast", good, WEATHER_CFG)  # the tool is known now
    with pytest.raises(HttpException) as caught:
        await WeatherPlugin.run_plugin_tool("forecast", {"city": 3}, WEATHER_CFG)
    assert caught.value.code == "InvalidToolInput"
    with pytest.raises(HttpException) as caught:
        await WeatherPlugin.run_plugin_tool("forecast", good, {"bogus": 1})
    assert caught.value.code == "InvalidConfig"


class Overridden(BasePlugin):
    """A plugin whose instances replace a tool method with a callable of their own."""

    hiagent_tools = ("greet",)

    def __init__(self, mode: str = "class") -> None:
        if mode == "async":
            self.__dict__["greet"] = self._greet_async
        elif mode == "sync":
            self.__dict__["greet"] = self._greet_sync

    async def greet(self, name: str) -> str:
        return f"hello {name}"

    async def _greet_async(self, name: str) -> str:
        return f"async hello {name}"

    def _greet_sync(self, name: str) -> str:
        return f"sync hello {name} from {threading.current_thread().name}"


@pytest.mark.anyio
async def test_a_method_an_instance_replaces_is_run_as_the_instance_has_it() -> None:
    assert await Overridden.run_plugin_tool("greet", {"name": "a"}, None) == "hello a"
    assert await Overridden.run_plugin_tool("greet", {"name": "b"}, {"mode": "async"}) == (
        "async hello b"
    )
    sync = await Overridden.run_plugin_tool("greet", {"name": "c"}, {"mode": "sync"})
    assert sync.startswith("sync hello c from ")
    assert sync != f"sync hello c from {threading.current_thread().name}"  # a worker thread
