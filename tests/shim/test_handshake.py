"""`initialize`: what the shim says about itself, and every way the handshake fails."""

from __future__ import annotations

from pathlib import Path

import pytest

import hiagent_shim
from hiagent_host.errors import PACKAGE_NOT_FOUND, PROTOCOL_ERROR, HostError
from hiagent_host.rpc import PROTOCOL_VERSION, initialize
from hiagent_host.rpc.messages import INVALID_PARAMS, INVALID_REQUEST, NOT_INITIALIZED
from tests.shim.support import START_S, STEP_S, raw_shim, running_shim


def test_host_and_shim_speak_the_same_protocol_version() -> None:
    assert PROTOCOL_VERSION == hiagent_shim.PROTOCOL_VERSION


@pytest.mark.anyio
async def test_the_handshake_names_versions_pid_package_and_plugins(
    shim_python: Path, data_dir: Path
) -> None:
    async with running_shim(shim_python, "HiAgent_Plugin.Clock", data_dir) as shim:
        handshake = shim.handshake
    assert handshake is not None
    assert handshake.shim_version == hiagent_shim.__version__
    assert handshake.protocol_version == PROTOCOL_VERSION
    assert handshake.pid == shim.process.pid
    assert handshake.python_version.count(".") == 2
    assert (handshake.package.name, handshake.package.version) == ("hiagent-plugin-clock", "0.1.0")
    assert handshake.plugins == ["时间工具"]


@pytest.mark.anyio
async def test_a_package_with_two_plugins_lists_both_in_entry_point_order(
    shim_python: Path, data_dir: Path
) -> None:
    async with running_shim(shim_python, "hiagent-plugin-multi", data_dir) as shim:
        assert shim.handshake is not None
        assert shim.handshake.plugins == ["alpha", "beta"]
        assert await shim.run_tool("alpha", "greet", {"name": "ann"}) == "hello, ann"
        assert await shim.run_tool("beta", "shout", {"text": "hi"}) == "HI!"


@pytest.mark.anyio
async def test_a_plugin_failing_to_import_fails_the_handshake_naming_it(
    shim_python: Path, data_dir: Path
) -> None:
    async with running_shim(
        shim_python, "hiagent-plugin-crash-on-import", data_dir, handshake=False
    ) as shim:
        with pytest.raises(HostError) as caught:
            await initialize(shim.peer, timeout_s=START_S)
        await shim.stderr.wait_for("refuses to load")
    error = caught.value
    assert (error.code, error.http_status) == ("PluginImportFailed", 502)
    assert error.data["plugin"] == "crash_on_import"
    assert error.data["exception"] == "RuntimeError"
    assert error.data["message"] == "crash_on_import: this plugin refuses to load"
    assert "Traceback" not in repr(error.data) + error.message
    assert "Traceback (most recent call last)" in shim.stderr.text


@pytest.mark.anyio
async def test_a_package_that_is_not_installed_fails_the_handshake(
    shim_python: Path, data_dir: Path
) -> None:
    async with running_shim(shim_python, "hiagent-plugin-absent", data_dir, handshake=False) as s:
        with pytest.raises(HostError) as caught:
            await initialize(s.peer, timeout_s=START_S)
    assert (caught.value.code, caught.value.http_status) == (PACKAGE_NOT_FOUND, 404)


@pytest.mark.anyio
async def test_methods_before_initialize_are_refused_then_served_after_it(
    shim_python: Path, data_dir: Path
) -> None:
    async with running_shim(shim_python, "hiagent-plugin-calc", data_dir, handshake=False) as shim:
        with pytest.raises(HostError) as caught:
            await shim.peer.call("ping", timeout_s=STEP_S)
        assert caught.value.code == PROTOCOL_ERROR
        assert caught.value.data["rpc_code"] == NOT_INITIALIZED
        await initialize(shim.peer, timeout_s=START_S)
        assert await shim.peer.call("ping", timeout_s=STEP_S) == "pong"
        with pytest.raises(HostError) as again:
            await initialize(shim.peer, timeout_s=START_S)
        assert again.value.data["rpc_code"] == INVALID_REQUEST


@pytest.mark.anyio
async def test_another_protocol_version_is_refused(shim_python: Path, data_dir: Path) -> None:
    async with raw_shim(shim_python, "hiagent-plugin-calc", data_dir) as shim:
        params = {"protocol_version": 99, "max_frame_bytes": 4096, "stream_window": 1}
        await shim.request(1, "initialize", params)
        answer = await shim.receive()
    assert answer["id"] == 1
    assert answer["error"]["code"] == INVALID_PARAMS
    assert answer["error"]["data"] == {
        "code": "ProtocolError",
        "http_code": 502,
        "data": {"expected": 1, "got": 99},
    }
