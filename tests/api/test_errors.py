"""Every error code of the spec, from the real server, asserted on `error.code` and the status."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hiagent_host.app import create_app
from hiagent_host.config import load_config
from tests.api.conftest import Installed, install, running_app
from tests.api.support import LiveServer, WheelServer, envelope_error

ECHO: Final = {"pkg": "hiagent-plugin-echo", "version": "0.1.0", "plugin": "echo"}
STREAM: Final = {"pkg": "hiagent-plugin-stream", "version": "0.1.0", "plugin": "stream"}
# A call that holds the guarded server's only process slot ends by itself after this long.
HOLD_S: Final = 3.0
# Waiting for that call to be in flight is bounded by this.
WAIT_S: Final = 30.0


def expect(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = envelope_error(response)
    assert error["code"] == code, error
    return error


@pytest.mark.parametrize(
    ("call", "status", "code"),
    [
        ({"pkg": "hiagent-plugin-nothing", "version": "1.0", "plugin": "x", "tool": "y"}, 404,
         "PackageNotFound"),
        (ECHO | {"plugin": "no-such-plugin", "tool": "echo"}, 404, "PluginEntryNotFound"),
        (ECHO | {"tool": "no_such_tool"}, 404, "ToolNotFound"),
        (STREAM | {"tool": "plain", "stream": True}, 400, "StreamNotSupported"),
        (ECHO | {"tool": "repeat", "input": {"count": "many"}}, 422, "InvalidToolInput"),
    ],
)  # fmt: skip
def test_tool_call_errors_before_the_call_have_their_status(
    client: httpx.Client, installed: Installed, call: dict[str, Any], status: int, code: str
) -> None:
    expect(client.post("/v1/RunPluginTool", json=call), status, code)


def test_invalid_tool_input_lists_every_bad_field(
    client: httpx.Client, installed: Installed
) -> None:
    call = ECHO | {"tool": "repeat", "input": {"count": "many", "text": 5}}
    error = expect(client.post("/v1/RunPluginTool", json=call), 422, "InvalidToolInput")
    assert sorted(item["loc"][0] for item in error["data"]["errors"]) == ["count", "text"]


def test_an_invalid_wheel_is_a_400_listing_its_problems(
    client: httpx.Client, tmp_path: Path
) -> None:
    bogus = tmp_path / "bogus-1.0-py3-none-any.whl"
    bogus.write_bytes(b"this is not a zip archive")
    error = expect(install(client, bogus), 400, "InvalidPackage")
    assert error["data"]["problems"]


def test_a_failed_download_is_a_502(client: httpx.Client, wheel_server: WheelServer) -> None:
    uri = f"{wheel_server.url}/missing-1.0-py3-none-any.whl"
    response = client.post(
        "/v1/InstallPackage", json={"uri": uri, "filename": "missing-1.0-py3-none-any.whl"}
    )
    expect(response, 502, "DownloadFailed")


def test_a_plugin_that_cannot_be_imported_fails_the_install_with_a_500(
    client: httpx.Client, wheels: dict[str, Path]
) -> None:
    expect(install(client, wheels["pkg_importerror"]), 500, "InstallFailed")


def test_a_plugin_process_dying_mid_call_is_a_502(
    client: httpx.Client, installed: Installed
) -> None:
    call = {"pkg": "hiagent-plugin-exit-mid-call", "version": "0.1.0", "plugin": "exit_mid_call",
            "tool": "exit_now", "input": {"code": 7}}  # fmt: skip
    error = expect(client.post("/v1/RunPluginTool", json=call), 502, "PluginCrashed")
    assert error["data"]["exit_code"] == 7


def test_an_unknown_job_is_a_404(client: httpx.Client) -> None:
    response = client.post("/v1/GetInstallPackageAsyncStatus", json={"job_id": "0" * 32})
    expect(response, 404, "JobNotFound")


def test_a_missing_icon_is_a_404(client: httpx.Client, installed: Installed) -> None:
    expect(client.post("/v1/GetPluginIcon", json=ECHO), 404, "IconNotFound")


def test_no_api_key_or_a_wrong_one_is_a_401(guarded: LiveServer) -> None:
    with httpx.Client(base_url=guarded.url, timeout=30) as anonymous:
        error = expect(anonymous.post("/v1/ListPackages", json={}), 401, "Unauthorized")
        assert "key" in error["message"]
        wrong = anonymous.post(
            "/v1/ListPackages", json={}, headers={"Authorization": "Bearer nope"}
        )
        expect(wrong, 401, "Unauthorized")
        assert wrong.headers["www-authenticate"] == "Bearer"


def test_a_file_uri_outside_the_allowed_roots_is_a_403(
    guarded_client: httpx.Client, wheels: dict[str, Path], tmp_path: Path
) -> None:
    outside = tmp_path / wheels["echo"].name
    shutil.copy2(wheels["echo"], outside)
    expect(install(guarded_client, outside), 403, "Forbidden")


def test_an_unreachable_queue_is_a_prompt_503(
    guarded_client: httpx.Client, wheels: dict[str, Path]
) -> None:
    wheel = wheels["echo"]
    started = time.monotonic()
    response = guarded_client.post(
        "/v1/InstallPackageAsync", json={"uri": wheel.as_uri(), "filename": wheel.name}
    )
    expect(response, 503, "QueueUnavailable")
    assert time.monotonic() - started < 10
    health = guarded_client.get("/v1/health")
    error = expect(health, 503, "QueueUnavailable")
    assert error["data"]["status"] == "degraded"
    assert error["data"]["queue"]["ok"] is False


def test_a_pool_with_every_slot_busy_is_a_503_with_retry_after(
    guarded: LiveServer, guarded_client: httpx.Client
) -> None:
    hold = {"pkg": "hiagent-plugin-hang", "version": "0.1.0", "plugin": "hang",
            "tool": "sleep_async", "input": {"seconds": HOLD_S}}  # fmt: skip
    holder = threading.Thread(
        target=guarded_client.post, args=("/v1/RunPluginTool",), kwargs={"json": hold}
    )
    holder.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while not _busy(guarded_client, "hiagent-plugin-hang"):
            assert time.monotonic() < deadline, "the holding call never started"
            time.sleep(0.02)  # polling ListProcesses, bounded by WAIT_S
        response = guarded_client.post(
            "/v1/RunPluginTool", json=ECHO | {"tool": "echo", "input": {}}
        )
        error = expect(response, 503, "PoolExhausted")
        assert int(response.headers["retry-after"]) >= 1
        assert error["data"]["retry_after_s"] >= 0
    finally:
        holder.join()


def _busy(client: httpx.Client, pkg: str) -> bool:
    processes = client.post("/v1/ListProcesses", json={}).json()["data"]
    return any(p["pkg"] == pkg and p["calls_in_flight"] > 0 for p in processes)


@pytest.mark.anyio
async def test_an_unanticipated_exception_is_a_logged_500_and_the_server_keeps_serving(
    app_config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def boom(request: Request) -> Response:
        raise RuntimeError("something nobody planned for")

    app = create_app(load_config(app_config), extra_routes=[Route("/boom", boom, methods=["POST"])])
    async with running_app(app) as http:
        with caplog.at_level(logging.ERROR, logger="hiagent_host.api"):
            response = await http.post("/boom", headers={"X-Request-ID": "boom-1"})
        assert response.status_code == 500
        error = envelope_error(response)
        assert error["code"] == "InternalError"
        assert "nobody planned" not in error["message"]
        assert response.headers["x-request-id"] == "boom-1"
        [record] = [r for r in caplog.records if r.exc_info]
        assert "boom-1" in record.getMessage()
        assert (await http.get("/ping")).status_code == 200


def test_an_ordinary_plugin_exception_is_a_500_named_after_its_class(
    client: httpx.Client, wheels: dict[str, Path]
) -> None:
    assert install(client, wheels["calc"]).status_code == 200
    call = {"pkg": "hiagent-plugin-calc", "version": "0.1.0", "plugin": "calc",
            "tool": "evaluate", "input": {"expression": "1 / 0"}}  # fmt: skip
    error = expect(client.post("/v1/RunPluginTool", json=call), 500, "ZeroDivisionError")
    assert "zero" in error["message"]


def test_a_name_that_can_never_be_a_package_is_a_422(client: httpx.Client) -> None:
    response = client.post("/v1/DeletePackage", json={"pkg": "../etc", "version": "1.0"})
    expect(response, 422, "InvalidRequest")


def test_a_bad_filename_is_refused_before_anything_is_fetched(client: httpx.Client) -> None:
    body = {"uri": "http://127.0.0.1:9/x.whl", "filename": "../x-1.0-py3-none-any.whl"}
    expect(client.post("/v1/InstallPackage", json=body), 422, "InvalidRequest")
