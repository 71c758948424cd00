"""API keys: every route but the probes needs `Authorization: Bearer`; without keys all is open."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from hiagent_host.app import create_app
from hiagent_host.config import load_config
from tests.api.conftest import API_KEY, running_app
from tests.api.support import LiveServer, envelope_error, write_config

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("path", ["/ping", "/v1/health", "/metrics", "/docs"])
def test_probes_metrics_and_the_docs_page_need_no_key(guarded: LiveServer, path: str) -> None:
    response = httpx.get(f"{guarded.url}{path}", timeout=30)
    assert response.status_code in {200, 503}  # health is degraded on this server (no Redis)
    assert response.status_code != 401


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/openapi.json"), ("POST", "/v1/ListPackages"), ("POST", "/v1/RunPluginTool"),
     ("POST", "/v1/NoSuchRoute")],
)  # fmt: skip
def test_everything_else_needs_the_key(guarded: LiveServer, method: str, path: str) -> None:
    response = httpx.request(method, f"{guarded.url}{path}", json={}, timeout=30)
    assert response.status_code == 401
    assert envelope_error(response)["code"] == "Unauthorized"
    assert "x-request-id" in response.headers


def test_the_right_key_is_accepted_in_any_case_of_the_scheme(guarded: LiveServer) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        headers = {"Authorization": f"{scheme} {API_KEY}"}
        response = httpx.post(
            f"{guarded.url}/v1/ListPackages", json={}, headers=headers, timeout=30
        )
        assert response.status_code == 200


def test_another_scheme_is_refused(guarded: LiveServer) -> None:
    headers = {"Authorization": f"Basic {API_KEY}"}
    response = httpx.post(f"{guarded.url}/v1/ListPackages", json={}, headers=headers, timeout=30)
    assert response.status_code == 401


def test_the_openapi_document_declares_bearer_security_and_the_public_routes(
    guarded_client: httpx.Client,
) -> None:
    document = guarded_client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer"}
    }
    assert document["paths"]["/ping"]["get"]["security"] == []
    assert "security" not in document["paths"]["/v1/ListPackages"]["post"]


def test_keys_are_never_written_to_the_log(
    guarded: LiveServer, guarded_client: httpx.Client
) -> None:
    guarded_client.post("/v1/ListPackages", json={})
    httpx.post(
        f"{guarded.url}/v1/ListPackages", json={}, headers={"Authorization": "Bearer guess-123"}
    )
    log = guarded.log()
    assert API_KEY not in log
    assert "guess-123" not in log


async def test_keys_from_a_file_are_accepted(tmp_path: Path, wheelhouse: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# one key per line\nfile-key-1\n\nfile-key-2\n")
    config = write_config(
        tmp_path / "runtime.toml",
        tmp_path / "data",
        wheelhouse,
        1,
        auth={"api_keys_file": str(keys)},
    )
    async with running_app(create_app(load_config(config))) as http:
        assert (await http.post("/v1/ListPackages", json={})).status_code == 401
        for key in ("file-key-1", "file-key-2"):
            response = await http.post(
                "/v1/ListPackages", json={}, headers={"Authorization": f"Bearer {key}"}
            )
            assert response.status_code == 200


async def test_without_keys_every_route_is_open(app_client: httpx.AsyncClient) -> None:
    assert (await app_client.post("/v1/ListPackages", json={})).status_code == 200
    assert (await app_client.get("/openapi.json")).status_code == 200
