"""Secret config values: found through the config schema, kept out of every sink.

Planted secrets (plain, with quotes and backslashes, non-ASCII, nested in an object) go
through every route that takes a cfg, on a server logging at debug, with a plugin that fails
with its whole config in the message and prints it on stderr; then every sink is searched:
HTTP answers, the server log, the per-plugin logs, job and install records, metrics.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import httpx
import pytest

from hiagent_host import redact
from hiagent_host.config import LoggingConfig
from hiagent_host.errors import HostError
from hiagent_host.logs import configure
from hiagent_host.pool.secrets import scrub, secret_values
from hiagent_host.redact import Secrets, renderings
from tests.api.conftest import Installed, own_server
from tests.api.support import (
    REQUEST_TIMEOUT_S,
    LiveServer,
    envelope_error,
    parse_sse,
)

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
    assert sorted(secret_values(SCHEMA, cfg)) == ["k-123456", "p-secret", "t-abcdef"]


def test_no_schema_or_no_cfg_means_no_secrets() -> None:
    assert secret_values({}, {"api_key": "x"}) == []
    assert secret_values(SCHEMA, None) == []


def test_the_log_formatter_masks_the_calls_secrets_keys_and_bearer_tokens() -> None:
    stream = io.StringIO()
    handler = configure(LoggingConfig(level="info"), keys=["configured-key-9"], stream=stream)
    try:
        log = logging.getLogger("hiagent_host.test")
        with redact.scope(Secrets(["registered-secret-1"])):
            log.info("value %s", "registered-secret-1")
            try:
                raise ValueError("registered-secret-1 in a traceback")
            except ValueError:
                log.exception("failed")
        log.info("Authorization: Bearer abcdef.123")
        log.info("key configured-key-9")
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


def test_scrub_masks_secrets_in_an_error_message_and_its_data() -> None:
    error = HostError(
        "bad key sk-abc-123", code="X", http_status=400, data={"echo": ["sk-abc-123"]}
    )
    scrubbed = scrub(error, Secrets(["sk-abc-123"]))
    assert scrubbed.to_dict() == {
        "code": "X",
        "message": "bad key ***",
        "data": {"echo": ["***"]},
        "http_code": 400,
    }


def test_json_log_lines_mask_a_secret_that_json_would_escape() -> None:
    stream = io.StringIO()
    tricky = 'pa"ss\\word-\u5bc6\u94a5-91'
    handler = configure(LoggingConfig(level="info", json=True), stream=stream)
    try:
        with redact.scope(Secrets([tricky])):
            logging.getLogger("hiagent_host.test").info("cfg was %s", tricky)
    finally:
        logging.getLogger().removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["message"] == "cfg was ***"


# ---- every sink, with a server logging at debug -------------------------------------------

PLANTS: Final = {
    "plain": "sk-PLANTED-plain-7f3a9c51e2d4",
    "quotes": 'sk-"PLANTED"\\quote\'s-2b8d\\n',
    "unicode": "sk-PLANTED-密钥-ключ-9c4e",
}
NESTED: Final = {
    "user": "alice",
    "password": "PLANTED-pw-5e1f",
    "deep": {"token": "PLANTED-tk-8a2c"},
}
EVERY_SECRET: Final = [*PLANTS.values(), "PLANTED-pw-5e1f", "PLANTED-tk-8a2c"]


@pytest.fixture(scope="module")
def debug_server(
    tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, wheels: dict[str, Path]
) -> Iterator[LiveServer]:
    """A server of its own at log level debug (stderr of plugins is copied into its log)."""
    root = tmp_path_factory.mktemp("secrets")
    with own_server(root, wheelhouse, [wheels["secret"]], logging={"level": "debug"}) as live:
        yield live


def _calls(http: httpx.Client, secret: str) -> list[httpx.Response]:
    """Every route that takes a cfg, made to fail in every way that could echo it."""
    cfg = {"api_key": secret, "auth": NESTED}
    leak = SECRET_REF | {"tool": "leak", "cfg": cfg}
    query = SECRET_REF | {"tool": "leak"}
    header = json.dumps(cfg, ensure_ascii=False).encode("utf-8")  # the adapter's cfg header
    return [
        http.post("/v1/RunPluginTool", json=leak),
        http.post("/v1/RunPluginTool", json=leak | {"stream": True}),
        http.post(
            "/v1/RunPluginToolAdapterRuntime", params=query, json={}, headers={"cfg": header}
        ),
        http.post("/v1/RunPluginTool", json=leak | {"cfg": cfg | {"region": 5}}),
        http.post("/v1/RunPluginValidate", json=SECRET_REF | {"cfg": {"api_key": "x" + secret}}),
        http.post("/v1/RunPluginValidate", json=SECRET_REF | {"cfg": cfg}),
    ]


def _leaks(text: str) -> list[str]:
    return [secret for secret in EVERY_SECRET for form in renderings(secret) if form in text]


def test_planted_secrets_reach_no_sink_on_a_server_logging_at_debug(
    debug_server: LiveServer,
) -> None:
    answers: list[httpx.Response] = []
    with httpx.Client(base_url=debug_server.url, timeout=REQUEST_TIMEOUT_S) as http:
        for secret in PLANTS.values():
            answers += _calls(http, secret)
        metrics = http.get("/metrics").text
    statuses = [(a.status_code, envelope_error(a)["code"] if a.status_code != 200 else "")
                for a in answers[:6]]  # fmt: skip
    assert statuses == [
        (500, "RuntimeError"),
        (200, ""),  # the stream fails after its first item: an error event
        (500, "RuntimeError"),
        (422, "InvalidConfig"),
        (400, "InvalidConfig"),
        (200, ""),
    ]
    assert parse_sse(answers[1].text)[-1]["event"] == "error"
    data = Path(debug_server.config).parent / "data"
    plugin_logs = "".join(
        p.read_text(encoding="utf-8", errors="replace")
        for p in (data / "state" / "logs").rglob("*.log*")
    )
    # the report did reach the plugin log and the server log, masked
    assert "upstream refused" in plugin_logs
    assert "about to fail with config" in plugin_logs
    assert "***" in plugin_logs
    assert "upstream refused" in debug_server.log()
    assert "upstream refused" in answers[0].text
    for answer in answers:
        assert _leaks(answer.text) == [], answer.text
    assert _leaks(debug_server.log()) == []
    assert _leaks(plugin_logs) == []
    assert _leaks(metrics) == []
    records = [p for p in data.rglob("*") if p.is_file() and "venvs" not in p.parts]
    for path in records:
        assert _leaks(path.read_bytes().decode("utf-8", "replace")) == [], path


def test_a_constructor_network_error_keeps_its_class_and_500(debug_server: LiveServer) -> None:
    call = SECRET_REF | {"tool": "has_key", "cfg": {"api_key": "sk-unreachable"}}
    with httpx.Client(base_url=debug_server.url, timeout=REQUEST_TIMEOUT_S) as http:
        answer = http.post("/v1/RunPluginTool", json=call)
        stream = http.post("/v1/RunPluginTool", json=call | {"tool": "leak", "stream": True})
    assert answer.status_code == 500
    assert envelope_error(answer)["code"] == "ConnectionRefusedError"
    assert envelope_error(stream)["code"] == "ConnectionRefusedError"
