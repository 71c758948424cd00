"""Every method of the real shim (`metadata`, `run_tool`, `validate`, `ping`, `shutdown`)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from hiagent_host.errors import (
    INVALID_CONFIG,
    INVALID_TOOL_INPUT,
    PLUGIN_ENTRY_NOT_FOUND,
    PROTOCOL_ERROR,
    TOOL_NOT_FOUND,
    HostError,
)
from hiagent_host.rpc.messages import INVALID_PARAMS, METHOD_NOT_FOUND
from tests.shim.support import STEP_S, running_shim

CLOCK = "时间工具"


@pytest.mark.anyio
async def test_metadata_of_all_plugins_and_of_one(shim_python: Path, data_dir: Path) -> None:
    async with running_shim(shim_python, "hiagent-plugin-multi", data_dir) as shim:
        everything = await shim.peer.call("metadata", {}, timeout_s=STEP_S)
        one = await shim.peer.call("metadata", {"plugin": "beta"}, timeout_s=STEP_S)
    assert list(everything) == ["alpha", "beta"]
    assert one == {"beta": everything["beta"]}
    assert everything["alpha"]["meta_version"] == "v1"
    assert everything["alpha"]["package_info"] == {
        "name": "hiagent_plugin_multi",
        "version": "0.1.0",
    }


@pytest.mark.anyio
async def test_metadata_comes_from_the_packaged_yaml_when_there_is_one(
    shim_python: Path, data_dir: Path
) -> None:
    async with running_shim(shim_python, "hiagent-plugin-clock", data_dir) as shim:
        metadata = await shim.peer.call("metadata", {"plugin": CLOCK}, timeout_s=STEP_S)
    clock = metadata[CLOCK]
    assert clock["name"] == CLOCK
    assert clock["labels"]["description_en"] == "Tells the current time in any timezone."
    assert await anyio.Path(clock["icon"].removeprefix("file://")).is_file()


@pytest.mark.anyio
async def test_async_sync_and_regex_tools_return_their_values(
    shim_python: Path, data_dir: Path
) -> None:
    async with running_shim(shim_python, "hiagent-plugin-clock", data_dir) as shim:
        converted = await shim.run_tool(
            CLOCK,
            "convert_time",
            {"time": "2024-01-01T12:00:00+00:00", "timezone": "Asia/Shanghai"},
        )
        now = await shim.run_tool(CLOCK, "current_time", {"timezone": "Europe/Paris"})
    assert converted == "2024-01-01T20:00:00+08:00"
    assert now[-6:] in ("+01:00", "+02:00")
    async with running_shim(shim_python, "hiagent-plugin-calc", data_dir) as shim:
        assert await shim.run_tool("calc", "evaluate", {"expression": "(1 + 2) * 3 / 2"}) == 4.5
    async with running_shim(shim_python, "hiagent-plugin-regex", data_dir) as shim:
        found = await shim.run_tool(
            "regex", "extract", {"text": "a1 b22 c333", "pattern": r"[a-z](\d+)"}
        )
        assert found == ["1", "22", "333"]


@pytest.mark.anyio
async def test_tools_receive_their_input_and_cfg_exactly_as_sent(
    shim_python: Path, data_dir: Path
) -> None:
    payload = {"text": "汉字 ✓", "nested": {"list": [1, 2.5, None, True]}, "empty": {}}
    async with running_shim(shim_python, "hiagent-plugin-echo", data_dir) as shim:
        assert await shim.run_tool("echo", "echo", payload) == payload
        assert await shim.run_tool("echo", "echo_async", payload) == payload


@pytest.mark.anyio
async def test_sdk_errors_keep_their_code_status_and_details(
    shim_python: Path, data_dir: Path
) -> None:
    async with running_shim(shim_python, "hiagent-plugin-clock", data_dir) as shim:
        with pytest.raises(HostError) as no_tool:
            await shim.run_tool(CLOCK, "sundial")
        with pytest.raises(HostError) as bad_input:
            await shim.run_tool(CLOCK, "current_time", {"timezone": 5, "extra": 1})
        with pytest.raises(HostError) as no_plugin:
            await shim.run_tool("时钟", "current_time")
    assert (no_tool.value.code, no_tool.value.http_status) == (TOOL_NOT_FOUND, 404)
    assert no_tool.value.data["available"] == ["current_time", "convert_time"]
    assert (bad_input.value.code, bad_input.value.http_status) == (INVALID_TOOL_INPUT, 422)
    assert [e["loc"] for e in bad_input.value.data["errors"]] == [["timezone"], ["extra"]]
    assert (no_plugin.value.code, no_plugin.value.http_status) == (PLUGIN_ENTRY_NOT_FOUND, 404)
    assert no_plugin.value.data == {"plugin": "时钟", "available": [CLOCK]}


@pytest.mark.anyio
async def test_a_plugins_http_exception_is_forwarded_verbatim(
    shim_python: Path, data_dir: Path
) -> None:
    async with running_shim(shim_python, "hiagent-plugin-clock", data_dir) as shim:
        with pytest.raises(HostError) as caught:
            await shim.run_tool(CLOCK, "current_time", {"timezone": "Mars/Olympus"})
    error = caught.value
    assert (error.code, error.http_status) == ("UnknownTimezone", 400)
    assert error.message == "unknown timezone 'Mars/Olympus'"
    assert error.data == {"timezone": "Mars/Olympus"}


@pytest.mark.anyio
async def test_any_other_exception_is_its_class_name_with_status_500_and_no_traceback(
    shim_python: Path, data_dir: Path
) -> None:
    async with running_shim(shim_python, "hiagent-plugin-calc", data_dir) as shim:
        with pytest.raises(HostError) as caught:
            await shim.run_tool("calc", "evaluate", {"expression": "1 / 0"})
        await shim.stderr.wait_for("ZeroDivisionError")
        assert await shim.peer.call("ping", timeout_s=STEP_S) == "pong"
    error = caught.value
    assert (error.code, error.http_status, error.data) == ("ZeroDivisionError", 500, None)
    assert error.message == "division by zero"
    assert "run_tool plugin='calc' tool='evaluate'" in shim.stderr.text
    assert "Traceback (most recent call last)" in shim.stderr.text


@pytest.mark.anyio
async def test_validate_accepts_a_good_config_and_rejects_a_bad_key_without_echoing_it(
    shim_python: Path, data_dir: Path
) -> None:
    async with running_shim(shim_python, "hiagent-plugin-secret", data_dir) as shim:
        good = {"plugin": "secret", "cfg": {"api_key": "sk-good", "region": "eu"}}
        assert await shim.peer.call("validate", good, timeout_s=STEP_S) is None
        bad = {"plugin": "secret", "cfg": {"api_key": "hunter2"}}
        with pytest.raises(HostError) as rejected:
            await shim.peer.call("validate", bad, timeout_s=STEP_S)
        with pytest.raises(HostError) as missing:
            await shim.peer.call("validate", {"plugin": "secret", "cfg": {}}, timeout_s=STEP_S)
        answer = await shim.run_tool("secret", "has_key", cfg={"api_key": "sk-good"})
    assert (rejected.value.code, rejected.value.http_status) == (INVALID_CONFIG, 400)
    assert "hunter2" not in repr(rejected.value.to_dict())
    assert (missing.value.code, missing.value.http_status) == (INVALID_CONFIG, 422)
    assert answer == {"has_key": True, "region": "cn"}
    assert "hunter2" not in shim.stderr.text
    assert "sk-good" not in shim.stderr.text


@pytest.mark.anyio
async def test_protocol_faults_are_protocol_errors_and_the_shim_keeps_serving(
    shim_python: Path, data_dir: Path
) -> None:
    async with running_shim(shim_python, "hiagent-plugin-calc", data_dir) as shim:
        with pytest.raises(HostError) as unknown:
            await shim.peer.call("run_everything", {}, timeout_s=STEP_S)
        with pytest.raises(HostError) as bad_params:
            await shim.peer.call("run_tool", {"plugin": "calc", "tool": 7}, timeout_s=STEP_S)
        params = {"plugin": "calc", "tool": "evaluate", "stream": "yes"}
        with pytest.raises(HostError) as bad_stream_flag:
            await shim.peer.call("run_tool", params, timeout_s=STEP_S)
        assert await shim.peer.call("ping", timeout_s=STEP_S) == "pong"
    assert unknown.value.code == PROTOCOL_ERROR
    assert unknown.value.data["rpc_code"] == METHOD_NOT_FOUND
    assert bad_params.value.data["rpc_code"] == INVALID_PARAMS
    assert bad_stream_flag.value.data["rpc_code"] == INVALID_PARAMS


@pytest.mark.anyio
async def test_shutdown_answers_null_and_the_process_exits_0(
    shim_python: Path, data_dir: Path
) -> None:
    async with running_shim(shim_python, "hiagent-plugin-calc", data_dir) as shim:
        assert await shim.peer.call("shutdown", timeout_s=STEP_S) is None
        assert await shim.exit_status() == 0
        await shim.peer.closed.wait()
