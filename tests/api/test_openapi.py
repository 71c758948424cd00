"""/openapi.json: every route with its body and envelope; schemathesis finds no 5xx, no drift."""

from __future__ import annotations

import json
from typing import Any, Final

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from hiagent_host.api.routes import OPERATIONS
from tests.api.browser import artefacts_on_failure, wait_for
from tests.api.conftest import Installed
from tests.api.support import LiveServer

# Installs would fetch whatever URI hypothesis invents (and the journey covers them);
# schemathesis leaves out the schema's own URL by itself.
NOT_FUZZED: Final = {
    "/v1/InstallPackage",
    "/v1/InstallPackageAsync",
    "/v1/ReadPackageMetadata",
    "/v1/UploadPackage",
    "/openapi.json",
    "/",  # a redirect to /console, which is fuzzed itself
}
MAX_EXAMPLES: Final = 15


def test_every_route_is_documented_with_its_body_and_responses(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    for op in OPERATIONS:
        operation = document["paths"][op.path][op.method.lower()]
        assert operation["responses"].keys() & {"200", "307"}, op.path
        if op.body is not None:
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            assert schema, op.path
    schemas = document["components"]["schemas"]
    run_tool = schemas["RunPluginTool"]
    assert set(run_tool["required"]) == {"pkg", "version", "plugin", "tool"}
    assert set(run_tool["properties"]) >= {"input", "cfg", "stream", "timeout_s"}
    assert schemas["ErrorObject"]["required"] == ["code", "message", "data", "http_code"]


def test_every_field_and_parameter_has_a_description(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    for name, schema in document["components"]["schemas"].items():
        for field, prop in (schema.get("properties") or {}).items():
            assert prop.get("description"), f"{name}.{field}"
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            assert operation["summary"], (method, path)
            for parameter in operation.get("parameters", []):
                assert parameter.get("description"), (path, parameter["name"])


def test_the_docs_page_shows_descriptions_without_raw_markdown_and_realistic_bodies(
    server: LiveServer, browser: WebDriver
) -> None:
    with artefacts_on_failure(browser, "docs-page"):
        browser.get(f"{server.url}/docs")
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "details.op"))
        for details in browser.find_elements(By.CSS_SELECTOR, "details.op"):
            details.find_element(By.TAG_NAME, "summary").click()
        text = browser.find_element(By.TAG_NAME, "body").text
        assert "`" not in text
        assert "Deadline in seconds" in text  # field descriptions are shown
        run_tool = browser.find_element(By.XPATH, "//details[.//span[text()='/v1/RunPluginTool']]")
        body = json.loads(run_tool.find_element(By.TAG_NAME, "textarea").get_attribute("value"))
        assert body == {
            "pkg": "hiagent-plugin-clock",
            "version": "0.1.0",
            "plugin": "时间工具",
            "tool": "convert_time",
            "input": {"time": "2024-05-01T12:00:00+00:00", "timezone": "Asia/Shanghai"},
        }


def test_the_docs_page_is_self_contained(client: httpx.Client) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "/openapi.json" in page
    for marker in ("http://", "https://", "//cdn", "<link", "src="):
        assert marker not in page, marker


CHECKS: Final = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_live_api_conforms_to_its_schema_and_never_answers_5xx(
    server: LiveServer, installed: Installed, mode: GenerationMode
) -> None:
    # schemathesis's own pytest loader does not run on this pytest; drive hypothesis directly
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json").exclude(
        path=sorted(NOT_FUZZED)
    )
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    fuzzed = {op.path for op in operations}
    assert fuzzed == {op.path for op in OPERATIONS} - NOT_FUZZED
    for operation in operations:
        mutable = len(operation.body) or len(operation.query) or len(operation.headers)
        if mode is GenerationMode.NEGATIVE and not mutable:
            continue  # nothing to get wrong in a GET without parameters

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def conforms(case: Any) -> None:
            case.call_and_validate(checks=CHECKS, timeout=30)

        conforms()
