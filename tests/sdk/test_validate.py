"""run_plugin_validate: the config model first, then the plugin's own `_validate()`."""

from __future__ import annotations

import pytest
from hiagent_plugin_sdk import HttpException

from tests.sdk.sample_plugins import (
    WEATHER_CFG,
    AsyncValidatePlugin,
    FailingInitPlugin,
    PlainPlugin,
    WeatherPlugin,
)


@pytest.mark.anyio
async def test_accepted_config_validates_without_error() -> None:
    await WeatherPlugin.run_plugin_validate(WEATHER_CFG)  # no exception: accepted


@pytest.mark.anyio
async def test_sync_validate_rejection_is_invalid_config_400_with_the_reason() -> None:
    with pytest.raises(HttpException) as caught:
        await WeatherPlugin.run_plugin_validate({"app_id": "reject", "token": "t"})
    error = caught.value
    assert (error.code, error.http_code) == ("InvalidConfig", 400)
    assert error.message == "app_id reject is not allowed"
    assert error.data == {"exception": "ValueError"}


@pytest.mark.anyio
async def test_validate_http_exception_passes_through_unchanged() -> None:
    with pytest.raises(HttpException) as caught:
        await WeatherPlugin.run_plugin_validate({"app_id": "http", "token": "t"})
    error = caught.value
    assert (error.code, error.message, error.data, error.http_code) == (
        "QuotaExceeded",
        "no quota left",
        {"left": 0},
        429,
    )


@pytest.mark.anyio
async def test_async_validate_is_awaited_on_an_instance_of_the_config() -> None:
    AsyncValidatePlugin.seen.clear()
    await AsyncValidatePlugin.run_plugin_validate({"key": "good"})
    assert AsyncValidatePlugin.seen == ["good"]
    with pytest.raises(HttpException) as caught:
        await AsyncValidatePlugin.run_plugin_validate({"key": "bad"})
    assert (caught.value.code, caught.value.message) == ("InvalidConfig", "key is bad")
    assert caught.value.data == {"exception": "RuntimeError"}


@pytest.mark.anyio
async def test_config_failing_the_schema_is_invalid_config_422_before_validate_runs() -> None:
    AsyncValidatePlugin.seen.clear()
    with pytest.raises(HttpException) as caught:
        await AsyncValidatePlugin.run_plugin_validate({"key": 1})
    assert (caught.value.code, caught.value.http_code) == ("InvalidConfig", 422)
    assert AsyncValidatePlugin.seen == []


@pytest.mark.anyio
async def test_plugin_without_the_mixin_only_needs_to_construct() -> None:
    await PlainPlugin.run_plugin_validate(None)  # no exception: accepted
    with pytest.raises(ValueError, match="url must be https"):
        await FailingInitPlugin.run_plugin_validate({"url": "ftp://x"})  # its own class, 500


@pytest.mark.anyio
async def test_a_rejection_whose_text_cannot_be_rendered_names_its_class() -> None:
    with pytest.raises(HttpException) as caught:
        await AsyncValidatePlugin.run_plugin_validate({"key": "unprintable"})
    error = caught.value
    assert (error.code, error.http_code, error.message) == (
        "InvalidConfig",
        400,
        "_UnprintableError",
    )
