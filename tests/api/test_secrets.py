"""Secret config values: found through the config schema, kept out of every log line and error."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Final

import httpx
import pytest

from hiagent_host.api import secrets
from hiagent_host.api.tools import scrub
from hiagent_host.config import LoggingConfig
from hiagent_host.errors import HostError
from hiagent_host.logs import configure
from tests.api.conftest import Installed
from tests.api.support import LiveServer

PLANTED: Final = "sk-PLANTED-7f3a9c51e2"
REJECTED: Final = "PLANTED-rejected-2b8d"
SECRET_REF: Final = {"pkg": "hiagent-plugin-secret", "version": "0.1.0", "plugin": "secret"}

SCHEMA: Final = {
    "title": "InModel",
    "type": "object",
    "properties": {
        "api_key": {"type": "string", "x-hiagent-secret": True},
        "token": {"anyOf": [{"type": "string", "x-hiagent-secret": True}, {"type": "null"}]},
        "auth": {"$ref": "#/$defs/Auth"},
        "region": {"type": "string"},
    },
    "$defs": {
        "Auth": {
            "type": "object",
            "properties": {"password": {"type": "string", "x-hiagent-secret": True},
                           "user": {"type": "string"}},
        }
    },
}  # fmt: skip


def test_secret_values_follow_the_schema_through_any_of_and_refs() -> None:
    cfg = {
        "api_key": "k-123456",
        "token": "t-abcdef",
        "auth": {"password": "p-secret", "user": "alice"},
        "region": "cn-north",
        "unknown": "not-marked",
    }
    assert sorted(secrets.secret_values(SCHEMA, cfg)) == ["k-123456", "p-secret", "t-abcdef"]


def test_no_schema_or_no_cfg_means_no_secrets() -> None:
    assert secrets.secret_values({}, {"api_key": "x"}) == []
    assert secrets.secret_values(SCHEMA, None) == []


def test_the_registry_masks_a_secret_that_contains_another_whole() -> None:
    registry = secrets.SecretRegistry()
    registry.add(["abcd", "abcd-long"])
    assert registry.redact("abcd-long abcd") == "*** ***"


def test_the_registry_ignores_values_too_short_to_mask_everywhere() -> None:
    registry = secrets.SecretRegistry()
    registry.add(["ab", ""])
    assert len(registry) == 0


def test_the_log_formatter_masks_registered_secrets_and_bearer_tokens() -> None:
    stream = io.StringIO()
    handler = configure(LoggingConfig(level="info"), keys=["configured-key-9"], stream=stream)
    try:
        secrets.registry.add(["registered-secret-1"])
        log = logging.getLogger("hiagent_host.test")
        log.info("value %s", "registered-secret-1")
        log.info("Authorization: Bearer abcdef.123")
        log.info("key configured-key-9")
        try:
            raise ValueError("registered-secret-1 in a traceback")
        except ValueError:
            log.exception("failed")
    finally:
        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    for leaked in ("registered-secret-1", "abcdef.123", "configured-key-9"):
        assert leaked not in text
    assert text.count("***") >= 4


def test_a_planted_secret_never_reaches_the_server_log(
    client: httpx.Client, server: LiveServer, installed: Installed
) -> None:
    call = SECRET_REF | {"tool": "has_key", "cfg": {"api_key": PLANTED, "region": "eu"}}
    assert client.post("/v1/RunPluginTool", json=call).json()["data"] == {
        "has_key": True,
        "region": "eu",
    }
    rejected = client.post(
        "/v1/RunPluginValidate", json=SECRET_REF | {"cfg": {"api_key": REJECTED}}
    )
    assert rejected.status_code == 400
    assert REJECTED not in rejected.text
    wrong_type = client.post(
        "/v1/RunPluginTool",
        json=SECRET_REF | {"tool": "has_key", "cfg": {"api_key": PLANTED, "region": 5}},
    )
    assert wrong_type.status_code == 422
    assert PLANTED not in wrong_type.text
    query = SECRET_REF | {"tool": "has_key"}
    adapter = client.post(
        "/v1/RunPluginToolAdapterRuntime", params=query, json={},
        headers={"cfg": f'{{"api_key": "{PLANTED}"}}'},
    )  # fmt: skip
    assert adapter.status_code == 200
    plugin_logs = "".join(
        p.read_text(errors="replace")
        for p in (server.config.parent / "data" / "state").rglob("*.log")
    )
    for text in (server.log(), plugin_logs):
        assert PLANTED not in text
        assert REJECTED not in text


def test_the_cfg_header_is_never_logged_even_when_it_is_not_json(
    client: httpx.Client, server: LiveServer, installed: Installed
) -> None:
    query = SECRET_REF | {"tool": "has_key"}
    raw = "{not json PLANTED-header-5d1e"
    response = client.post(
        "/v1/RunPluginToolAdapterRuntime", params=query, json={}, headers={"cfg": raw}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"
    assert "PLANTED-header-5d1e" not in response.text
    assert "PLANTED-header-5d1e" not in server.log()


@pytest.mark.parametrize("cfg", ["[1, 2]", '"text"'])
def test_a_cfg_header_that_is_not_an_object_is_a_422(
    client: httpx.Client, installed: Installed, cfg: str
) -> None:
    query = SECRET_REF | {"tool": "has_key"}
    response = client.post(
        "/v1/RunPluginToolAdapterRuntime", params=query, json={}, headers={"cfg": cfg}
    )
    assert response.status_code == 422
    assert response.json()["error"]["data"] == {"field": "cfg"}


@pytest.mark.anyio
async def test_a_secret_sent_in_cfg_is_masked_in_every_later_log_line(
    app_client: httpx.AsyncClient, wheels: dict[str, Path]
) -> None:
    wheel = wheels["secret"]
    installed = await app_client.post(
        "/v1/InstallPackage", json={"uri": wheel.as_uri(), "filename": wheel.name}, timeout=180
    )
    assert installed.status_code == 200, installed.text
    planted = "sk-in-process-5e7c1d"
    response = await app_client.post(
        "/v1/RunPluginValidate", json=SECRET_REF | {"cfg": {"api_key": planted}}
    )
    assert response.status_code == 200
    stream = io.StringIO()
    handler = configure(LoggingConfig(level="info", json=True), stream=stream)
    try:
        logging.getLogger("hiagent_host.test").warning("a plugin said: key=%s", planted)
    finally:
        logging.getLogger().removeHandler(handler)
    assert planted not in stream.getvalue()
    assert "key=***" in stream.getvalue()


def test_scrub_masks_secrets_in_an_error_message_and_its_data() -> None:
    error = HostError(
        "bad key sk-abc-123", code="X", http_status=400, data={"echo": ["sk-abc-123"]}
    )
    scrubbed = scrub(error, ["sk-abc-123"])
    assert scrubbed.to_dict() == {
        "code": "X",
        "message": "bad key ***",
        "data": {"echo": ["***"]},
        "http_code": 400,
    }


def test_json_log_lines_mask_a_secret_that_json_would_escape() -> None:
    stream = io.StringIO()
    tricky = 'pa"ss\\word-\u5bc6\u94a5-91'
    secrets.registry.add([tricky])
    handler = configure(LoggingConfig(level="info", json=True), stream=stream)
    try:
        logging.getLogger("hiagent_host.test").info("cfg was %s", tricky)
    finally:
        logging.getLogger().removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["message"] == "cfg was ***"
