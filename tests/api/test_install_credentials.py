"""Credentials in an install uri: sent as HTTP basic auth, kept only masked everywhere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Final

import httpx
import pytest

from tests.api.conftest import INSTALL_TIMEOUT_S
from tests.api.support import LiveServer, WheelServer, envelope_error

USER: Final = "wheel-reader"
PASSWORD: Final = "s3cr@t:pw-7d1e"  # an @ and a : that the uri carries percent-encoded
QUOTED: Final = "s3cr%40t%3Apw-7d1e"


@pytest.fixture(scope="module")
def private_index(wheel_dir: Path) -> Iterator[WheelServer]:
    server = WheelServer(wheel_dir, basic_auth=(USER, PASSWORD))
    try:
        yield server
    finally:
        server.close()


def _uri(index: WheelServer, wheel: Path, userinfo: str) -> str:
    return index.url.replace("http://", f"http://{userinfo}@") + f"/{wheel.name}"


def _leaks(text: str) -> bool:
    return PASSWORD in text or QUOTED in text


def test_credentials_in_the_uri_authenticate_the_download_and_are_kept_masked(
    client: httpx.Client, server: LiveServer, private_index: WheelServer, wheels: dict[str, Path]
) -> None:
    wheel = wheels["calc"]
    uri = _uri(private_index, wheel, f"{USER}:{QUOTED}")
    body = {"uri": uri, "filename": wheel.name, "force": True}
    installed = client.post("/v1/InstallPackage", json=body, timeout=INSTALL_TIMEOUT_S)
    assert installed.status_code == 200, installed.text
    masked = _uri(private_index, wheel, f"{USER}:***")
    assert installed.json()["data"]["uri"] == masked
    summary = client.post("/v1/ReadPackageMetadata", json=body, timeout=INSTALL_TIMEOUT_S)
    assert summary.json()["data"]["uri"] == masked
    listed = client.post("/v1/ListPackages", json={}).json()["data"]
    assert masked in {p["uri"] for p in listed}
    data = server.config.parent / "data"
    stored = [p for p in data.rglob("*") if p.is_file() and "venvs" not in p.parts]
    for text in [installed.text, summary.text, server.log()] + [
        p.read_bytes().decode("utf-8", "replace") for p in stored
    ]:
        assert not _leaks(text)


@pytest.mark.parametrize("userinfo", ["", f"{USER}:wrong", f"{USER}"])
def test_missing_or_wrong_credentials_are_a_download_failure_naming_the_status(
    client: httpx.Client, private_index: WheelServer, wheels: dict[str, Path], userinfo: str
) -> None:
    wheel = wheels["calc"]
    uri = _uri(private_index, wheel, userinfo) if userinfo else private_index.url + "/" + wheel.name
    answer = client.post("/v1/ReadPackageMetadata", json={"uri": uri, "filename": wheel.name})
    error = envelope_error(answer)
    assert (answer.status_code, error["code"], error["data"]["status"]) == (
        502,
        "DownloadFailed",
        401,
    )
    assert "wrong" not in answer.text


def test_an_async_install_refuses_credentials_and_keeps_no_job(
    client: httpx.Client, server: LiveServer, private_index: WheelServer, wheels: dict[str, Path]
) -> None:
    wheel = wheels["calc"]
    uri = _uri(private_index, wheel, f"{USER}:{QUOTED}")
    answer = client.post("/v1/InstallPackageAsync", json={"uri": uri, "filename": wheel.name})
    error = envelope_error(answer)
    assert (answer.status_code, error["code"]) == (422, "InvalidRequest")
    assert not _leaks(answer.text)
    assert not _leaks(server.log())
