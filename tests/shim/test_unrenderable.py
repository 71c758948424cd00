"""Results and exceptions that cannot be rendered are answered at once with a specific code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hiagent_host.errors import RESULT_NOT_SERIALIZABLE, HostError
from tests.shim.support import STEP_S, Shim, running_shim

PACKAGE = "hiagent-plugin-unrenderable"
PLUGIN = "unrenderable"


async def failure(shim: Shim, tool: str) -> HostError:
    with pytest.raises(HostError) as caught:
        await shim.run_tool(PLUGIN, tool, {}, timeout_s=STEP_S)
    return caught.value


@pytest.mark.anyio
@pytest.mark.parametrize(
    "tool", ["unprintable_result", "bad_dump_result", "cyclic_result", "nan_result"]
)
async def test_a_result_that_cannot_become_json_is_result_not_serializable(
    shim_python: Path, data_dir: Path, tool: str
) -> None:
    async with running_shim(shim_python, PACKAGE, data_dir) as shim:
        error = await failure(shim, tool)
        assert (error.code, error.http_status) == (RESULT_NOT_SERIALIZABLE, 500)
        assert await shim.run_tool(PLUGIN, "surrogates", {}) == "half ? a pair"  # still serving


@pytest.mark.anyio
async def test_an_exception_whose_str_raises_keeps_its_class_with_a_placeholder_message(
    shim_python: Path, data_dir: Path
) -> None:
    async with running_shim(shim_python, PACKAGE, data_dir) as shim:
        error = await failure(shim, "unprintable_error")
        assert (error.code, error.http_status) == ("UnprintableError", 500)
        assert "UnprintableError" in error.message
        await shim.stderr.wait_for("call")  # the shim reported it on stderr without dying
        treacherous = await failure(shim, "treacherous_error")
        assert (treacherous.code, treacherous.http_status) == ("TreacherousError", 500)
        assert treacherous.message == "treacherous"


@pytest.mark.anyio
async def test_an_http_exception_whose_data_is_not_json_keeps_code_and_message(
    shim_python: Path, data_dir: Path
) -> None:
    async with running_shim(shim_python, PACKAGE, data_dir) as shim:
        error = await failure(shim, "unprintable_error_data")
        assert (error.code, error.http_status, error.message) == ("Teapot", 418, "short and stout")
        assert error.data is None


@pytest.mark.anyio
async def test_a_stream_item_that_cannot_be_rendered_ends_the_stream_with_the_code(
    shim_python: Path, data_dir: Path
) -> None:
    seen: list[Any] = []

    async def relay(shim: Shim) -> None:
        params = {"plugin": PLUGIN, "tool": "stream", "input": {}, "stream": True}
        async with shim.peer.stream("run_tool", params, timeout_s=STEP_S) as items:
            async for item in items:
                seen.append(item)

    async with running_shim(shim_python, PACKAGE, data_dir) as shim:
        with pytest.raises(HostError) as caught:
            await relay(shim)
    assert seen == ["fine"]
    assert caught.value.code == RESULT_NOT_SERIALIZABLE
