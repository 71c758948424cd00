"""The whole journey of a HiAgent client against the real server, in the order a client walks it.

Install from file:// and http://, read a wheel, describe, icon, validate, run (sync, async,
streaming, with a deadline), the adapter route, async installs, delete. The tests run in file
order and each step builds on the ones before it, as a client session does.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from tests.api.conftest import Installed, install
from tests.api.support import INSTALL_TIMEOUT_S, LiveServer, WheelServer, envelope_error, parse_sse

CLOCK: Final = "hiagent-plugin-clock"
CALC: Final = "hiagent-plugin-calc"
# An async install of a small plugin finishes in seconds; polling its status is bounded by this.
JOB_WAIT_S: Final = 120.0
JOB_POLL_S: Final = 0.1


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["error"] is None, body
    return body["data"]


def test_ping_answers_pong_without_an_envelope_and_with_request_headers(
    client: httpx.Client,
) -> None:
    response = client.get("/ping", headers={"X-Request-ID": "journey-1"})
    assert response.json() == {"message": "pong"}
    assert response.headers["x-request-id"] == "journey-1"
    assert float(response.headers["x-process-time"]) >= 0


def test_read_package_metadata_describes_a_wheel_without_installing_it(
    client: httpx.Client, wheels: dict[str, Path]
) -> None:
    wheel = wheels["clock"]
    data = ok(
        client.post("/v1/ReadPackageMetadata", json={"uri": wheel.as_uri(), "filename": wheel.name})
    )
    assert data == {
        "name": CLOCK, "version": "0.1.0", "uri": wheel.as_uri(), "filename": wheel.name,
        "plugins": ["时间工具"],
    }  # fmt: skip
    listed = ok(client.post("/v1/ListPackages", json={}))
    assert CLOCK not in {p["name"] for p in listed}


def test_install_from_a_file_uri_returns_the_package_meta(
    client: httpx.Client, wheels: dict[str, Path]
) -> None:
    data = ok(install(client, wheels["clock"]))
    assert (data["name"], data["version"]) == (CLOCK, "0.1.0")
    assert data["filename"] == wheels["clock"].name
    [plugin] = data["plugins"]
    assert plugin["name"] == "时间工具"
    assert set(plugin["tools"]) == {"current_time", "convert_time"}


def test_installing_an_installed_version_without_force_is_a_409(
    client: httpx.Client, wheels: dict[str, Path]
) -> None:
    response = install(client, wheels["clock"], force=False)
    assert response.status_code == 409
    assert envelope_error(response)["code"] == "AlreadyInstalled"


def test_install_from_an_http_uri_served_on_loopback(
    client: httpx.Client, wheels: dict[str, Path], wheel_server: WheelServer
) -> None:
    wheel = wheels["calc"]
    uri = f"{wheel_server.url}/{wheel.name}"
    data = ok(client.post("/v1/InstallPackage", json={"uri": uri, "filename": wheel.name},
                          timeout=INSTALL_TIMEOUT_S))  # fmt: skip
    assert (data["name"], data["uri"]) == (CALC, uri)


def test_get_package_metadata_accepts_any_pep503_spelling_and_pep440_equal_version(
    client: httpx.Client,
) -> None:
    data = ok(
        client.post(
            "/v1/GetPackageMetadata", json={"pkg": "HiAgent_Plugin.Clock", "version": "0.1"}
        )
    )
    [metadata] = data
    assert metadata["name"] == "时间工具"
    assert metadata["meta_version"] == "v1"
    assert list(metadata)[:2] == ["meta_version", "name"]


def test_get_plugin_icon_returns_the_png_base64_encoded(client: httpx.Client) -> None:
    data = ok(
        client.post(
            "/v1/GetPluginIcon", json={"pkg": CLOCK, "version": "0.1.0", "plugin": "时间工具"}
        )
    )
    assert data["filename"] == "icon.png"
    assert base64.b64decode(data["content"]).startswith(b"\x89PNG\r\n\x1a\n")


def test_run_plugin_tool_runs_an_async_tool(client: httpx.Client) -> None:
    call = {"pkg": CLOCK, "version": "0.1.0", "plugin": "时间工具", "tool": "convert_time",
            "input": {"time": "2024-01-01T08:00:00+08:00", "timezone": "UTC"}}  # fmt: skip
    assert ok(client.post("/v1/RunPluginTool", json=call)) == "2024-01-01T00:00:00+00:00"


def test_run_plugin_tool_runs_a_sync_tool(client: httpx.Client) -> None:
    call = {"pkg": CALC, "version": "0.1.0", "plugin": "calc", "tool": "evaluate",
            "input": {"expression": "(1 + 2) * 3"}}  # fmt: skip
    assert ok(client.post("/v1/RunPluginTool", json=call)) == 9


def test_a_plugin_http_exception_reaches_the_caller_exactly(client: httpx.Client) -> None:
    call = {"pkg": CLOCK, "version": "0.1.0", "plugin": "时间工具", "tool": "current_time",
            "input": {"timezone": "Mars/Olympus"}}  # fmt: skip
    response = client.post("/v1/RunPluginTool", json=call)
    assert response.status_code == 400
    error = envelope_error(response)
    assert (error["code"], error["data"]) == ("UnknownTimezone", {"timezone": "Mars/Olympus"})


def test_run_plugin_validate_accepts_a_good_config_and_rejects_a_bad_one(
    client: httpx.Client, installed: Installed
) -> None:
    ref = {"pkg": "hiagent-plugin-secret", "version": "0.1.0", "plugin": "secret"}
    assert (
        ok(client.post("/v1/RunPluginValidate", json=ref | {"cfg": {"api_key": "sk-good"}})) is None
    )
    rejected = client.post("/v1/RunPluginValidate", json=ref | {"cfg": {"api_key": "bad"}})
    assert rejected.status_code == 400
    assert envelope_error(rejected)["code"] == "InvalidConfig"
    missing = client.post("/v1/RunPluginValidate", json=ref | {"cfg": {}})
    assert missing.status_code == 422
    error = envelope_error(missing)
    assert error["code"] == "InvalidConfig"
    assert [item["loc"] for item in error["data"]["errors"]] == [["api_key"]]


def test_streaming_sends_one_event_per_item_and_ends_with_done(
    client: httpx.Client, installed: Installed
) -> None:
    call = {"pkg": "hiagent-plugin-stream", "version": "0.1.0", "plugin": "stream",
            "tool": "events", "input": {"n": 2}, "stream": True}  # fmt: skip
    with client.stream("POST", "/v1/RunPluginTool", json=call) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "x-request-id" in response.headers
        text = response.read().decode()
    events = parse_sse(text)
    assert events == [
        {"event": "message", "id": "0", "data": "event 0"},
        {"data": "text 0"},
        {"event": "message", "id": "1", "data": "event 1"},
        {"data": "text 1"},
        {"data": '{"done":true}'},
        {"event": "done", "data": "{}"},
    ]


def test_a_tool_call_past_its_timeout_is_a_504(client: httpx.Client, installed: Installed) -> None:
    call = {"pkg": "hiagent-plugin-hang", "version": "0.1.0", "plugin": "hang",
            "tool": "sleep_async", "input": {}, "timeout_s": 0.5}  # fmt: skip
    started = time.monotonic()
    response = client.post("/v1/RunPluginTool", json=call)
    assert response.status_code == 504
    assert envelope_error(response)["code"] == "ToolTimeout"
    assert time.monotonic() - started < 10


def test_the_adapter_route_takes_names_from_the_query_input_from_the_body_cfg_from_a_header(
    client: httpx.Client, installed: Installed
) -> None:
    query = {
        "pkg": "hiagent_plugin_secret",
        "version": "0.1.0",
        "plugin": "secret",
        "tool": "has_key",
    }
    response = client.post(
        "/v1/RunPluginToolAdapterRuntime", params=query, json={},
        headers={"cfg": '{"api_key": "sk-adapter", "region": "eu"}'},
    )  # fmt: skip
    assert ok(response) == {"has_key": True, "region": "eu"}
    echo = {"pkg": "hiagent-plugin-echo", "version": "0.1.0", "plugin": "echo", "tool": "echo"}
    assert ok(
        client.post("/v1/RunPluginToolAdapterRuntime", params=echo, json={"a": [1, "二"]})
    ) == {"a": [1, "二"]}


def test_the_adapter_route_streams_when_the_body_says_stream(
    client: httpx.Client, installed: Installed
) -> None:
    query = {"pkg": "hiagent-plugin-echo", "version": "0.1.0", "plugin": "echo", "tool": "repeat"}
    body = {"text": "hi", "count": 2, "stream": True}
    response = client.post("/v1/RunPluginToolAdapterRuntime", params=query, json=body)
    assert response.status_code == 200
    assert parse_sse(response.text) == [
        {"data": "hi"},
        {"data": "hi"},
        {"event": "done", "data": "{}"},
    ]


def wait_for_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_WAIT_S
    while time.monotonic() < deadline:
        status = ok(client.post("/v1/GetInstallPackageAsyncStatus", json={"job_id": job_id}))
        if status["status"] in {"finished", "failed", "stopped"}:
            return status  # type: ignore[no-any-return]
        time.sleep(JOB_POLL_S)  # polling the status route, bounded by JOB_WAIT_S
    pytest.fail(f"job {job_id} did not end within {JOB_WAIT_S} s")


def test_async_install_status_cancel_and_retry(
    client: httpx.Client, wheels: dict[str, Path]
) -> None:
    wheel = wheels["regex"]
    job = ok(
        client.post("/v1/InstallPackageAsync", json={"uri": wheel.as_uri(), "filename": wheel.name})
    )
    status = wait_for_job(client, job["job_id"])
    assert status["status"] == "finished", status
    assert status["data"]["name"] == "hiagent-plugin-regex"
    assert status["reason"] is None
    cancel = client.post("/v1/CancelInstallPackage", json={"job_id": job["job_id"]})
    assert cancel.status_code == 400
    assert envelope_error(cancel)["code"] == "InvalidJobState"
    assert ok(client.post("/v1/RetryInstallPackage", json={"job_id": job["job_id"]})) is None
    again = wait_for_job(client, job["job_id"])
    # the retry runs the same request again: force=false on an installed version
    assert again["status"] == "failed"
    assert again["reason"].startswith("AlreadyInstalled: ")


def test_delete_package_is_idempotent_and_the_package_is_gone(client: httpx.Client) -> None:
    ref = {"pkg": CALC, "version": "0.1.0"}
    assert ok(client.post("/v1/DeletePackage", json=ref)) is None
    assert ok(client.post("/v1/DeletePackage", json=ref)) is None
    call = ref | {"plugin": "calc", "tool": "evaluate", "input": {"expression": "1"}}
    response = client.post("/v1/RunPluginTool", json=call)
    assert response.status_code == 404
    assert envelope_error(response)["code"] == "PackageNotFound"


def test_list_packages_and_processes_describe_what_is_installed_and_running(
    client: httpx.Client, server: LiveServer
) -> None:
    packages = ok(client.post("/v1/ListPackages", json={}))
    clock = next(p for p in packages if p["name"] == CLOCK)
    assert clock["plugins"] == ["时间工具"]
    assert Path(clock["venv_path"]).is_dir()
    assert clock["disk_size_bytes"] > 0
    processes = ok(client.post("/v1/ListProcesses", json={}))
    assert CLOCK in {p["pkg"] for p in processes}
