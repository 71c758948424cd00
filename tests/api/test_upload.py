"""UploadPackage: the wheel as the body, kept in the fetch cache, installed by a job like a uri."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from hiagent_host.app import create_app
from hiagent_host.config import load_config
from tests.api.conftest import running_app
from tests.api.support import envelope_error, free_port, write_config

pytestmark = pytest.mark.anyio

# A small fixture install finishes in seconds; this bounds a loaded machine.
JOB_TIMEOUT_S = 180.0
CAP_BYTES = 64 * 1024


@pytest.fixture
async def capped(tmp_path: Path, wheelhouse: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process app whose downloads (and so uploads) are capped at CAP_BYTES."""
    config = write_config(
        tmp_path / "runtime.toml", tmp_path / "data", wheelhouse, free_port(),
        packages={"max_download_bytes": CAP_BYTES}, logging={"json": False},
    )  # fmt: skip
    async with running_app(create_app(load_config(config))) as http:
        yield http


async def _finished(http: httpx.AsyncClient, job_id: str) -> dict[str, object]:
    with anyio.fail_after(JOB_TIMEOUT_S):
        while True:
            response = await http.post("/v1/GetInstallPackageAsyncStatus", json={"job_id": job_id})
            info: dict[str, object] = response.json()["data"]
            if info["status"] in {"finished", "failed", "stopped"}:
                return info
            await anyio.sleep(0.1)  # a bounded status poll, as a client does


async def test_an_uploaded_wheel_is_installed_by_a_job_and_listed_with_its_sha256(
    capped: httpx.AsyncClient, built_wheels: dict[str, Path]
) -> None:
    wheel = built_wheels["pkg_nodeps"]
    response = await capped.post(
        "/v1/UploadPackage", params={"filename": wheel.name}, content=wheel.read_bytes()
    )
    assert response.status_code == 200, response.text
    info = await _finished(capped, response.json()["data"]["job_id"])
    assert info["status"] == "finished", info
    [listed] = (await capped.post("/v1/ListPackages", json={})).json()["data"]
    assert listed["wheel_sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert listed["wheel_size"] == wheel.stat().st_size
    again = await capped.post(
        "/v1/UploadPackage", params={"filename": wheel.name}, content=wheel.read_bytes()
    )
    failed = await _finished(capped, again.json()["data"]["job_id"])
    assert str(failed["reason"]).startswith("AlreadyInstalled:")


async def test_an_upload_over_the_download_cap_is_refused_with_413(
    capped: httpx.AsyncClient,
) -> None:
    response = await capped.post(
        "/v1/UploadPackage",
        params={"filename": "big-1.0-py3-none-any.whl"},
        content=b"x" * (CAP_BYTES + 1),
    )
    assert response.status_code == 413
    assert envelope_error(response)["data"] == {"max_download_bytes": CAP_BYTES}


@pytest.mark.parametrize(
    "filename",
    ["../evil-1.0-py3-none-any.whl", "not-a-wheel.zip", "x" * 300 + "-1.0-py3-none-any.whl"],
)
async def test_an_upload_with_a_bad_file_name_is_refused_as_install_package_refuses_it(
    capped: httpx.AsyncClient, filename: str
) -> None:
    uploaded = await capped.post(
        "/v1/UploadPackage", params={"filename": filename}, content=b"PK\x03\x04"
    )
    installed = await capped.post(
        "/v1/InstallPackage", json={"uri": "file:///nowhere.whl", "filename": filename}
    )
    assert uploaded.status_code == installed.status_code
    assert uploaded.status_code in {400, 422}
    assert envelope_error(uploaded)["code"] == envelope_error(installed)["code"] == "InvalidRequest"


async def test_an_uploaded_file_that_is_not_a_wheel_fails_its_job_as_an_invalid_package(
    capped: httpx.AsyncClient,
) -> None:
    response = await capped.post(
        "/v1/UploadPackage",
        params={"filename": "junk-1.0-py3-none-any.whl"},
        content=b"this is not a zip file",
    )
    info = await _finished(capped, response.json()["data"]["job_id"])
    assert info["status"] == "failed"
    assert str(info["reason"]).startswith("InvalidPackage:")


async def test_an_empty_upload_is_a_bad_request(capped: httpx.AsyncClient) -> None:
    response = await capped.post(
        "/v1/UploadPackage", params={"filename": "empty-1.0-py3-none-any.whl"}, content=b""
    )
    assert response.status_code == 400
    assert envelope_error(response)["code"] == "BadRequest"
