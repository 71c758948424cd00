"""Plugin config for MCP calls: the operator's file, overlaid by the connection's header."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hiagent_host.api.mcp.plugin_config import PluginConfig
from hiagent_host.errors import BAD_REQUEST, CONFIG_INVALID, FORBIDDEN, INVALID_REQUEST, HostError

FILE = '["Hiagent_Plugin.Search".web]\napi_key = "sk-op-1234"\nregion = "eu"\n'


@pytest.fixture
def operator_file(tmp_path: Path) -> Path:
    path = tmp_path / "plugins.toml"
    path.write_text(FILE, encoding="utf-8")
    return path


def test_the_operator_file_configures_a_plugin_by_any_spelling_of_its_package(
    operator_file: Path,
) -> None:
    config = PluginConfig(operator_file, client_config=True)
    cfg, hidden = config.for_call("hiagent-plugin-search", "web", None)
    assert cfg == {"api_key": "sk-op-1234", "region": "eu"}
    assert set(hidden) == {"sk-op-1234", "eu"}  # never shown to a caller
    assert config.for_call("hiagent-plugin-search", "other", None) == (None, [])


def test_the_header_overlays_package_then_plugin_entries(operator_file: Path) -> None:
    config = PluginConfig(operator_file, client_config=True)
    header = (
        '{"hiagent_plugin_search": {"region": "us", "tier": 1},'
        ' "hiagent-plugin-search/web": {"tier": 2}}'
    )
    cfg, _ = config.for_call("hiagent-plugin-search", "web", {"x-hiagent-config": header})
    assert cfg == {"api_key": "sk-op-1234", "region": "us", "tier": 2}


def test_a_header_names_non_ascii_plugins_with_json_escapes() -> None:
    config = PluginConfig(None, client_config=True)
    header = '{"p/\\u65f6\\u95f4\\u5de5\\u5177": {"k": "v-secret-77"}}'
    cfg, _ = config.for_call("p", "时间工具", {"x-hiagent-config": header})
    assert cfg == {"k": "v-secret-77"}


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("{oops", BAD_REQUEST),
        ("[1]", INVALID_REQUEST),
        ('{"p": 3}', INVALID_REQUEST),
        ('{"p": {"k": ' + "[" * 100 + "]" * 100 + "}}", INVALID_REQUEST),
        ('{"p": {"k": ' + "[" * 5000 + "]" * 5000 + "}}", INVALID_REQUEST),
    ],
)
def test_a_malformed_header_is_a_clear_error(header: str, code: str) -> None:
    with pytest.raises(HostError) as caught:
        PluginConfig(None, client_config=True).for_call("p", "q", {"x-hiagent-config": header})
    assert caught.value.code == code


def test_the_header_is_refused_when_clients_may_not_configure_plugins() -> None:
    with pytest.raises(HostError) as caught:
        PluginConfig(None, client_config=False).for_call("p", "q", {"x-hiagent-config": "{}"})
    assert caught.value.code == FORBIDDEN


def test_a_bad_operator_file_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "plugins.toml"
    for text in ("[p]\nq = 1\n", 'not = toml = "sk-hidden-9"\n'):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(HostError) as caught:
            PluginConfig(path, client_config=True)
        assert caught.value.code == CONFIG_INVALID
        assert "sk-hidden-9" not in caught.value.message


def test_an_edited_file_is_read_again_and_a_broken_edit_keeps_the_last_good_one(
    operator_file: Path,
) -> None:
    config = PluginConfig(operator_file, client_config=True)
    operator_file.write_text(FILE.replace("eu", "ap"), encoding="utf-8")
    os.utime(operator_file, ns=(1, 1))  # a new identity even within one clock tick
    assert config.for_call("hiagent-plugin-search", "web", None)[0] == {
        "api_key": "sk-op-1234", "region": "ap",
    }  # fmt: skip
    operator_file.write_text("[broken", encoding="utf-8")
    assert config.for_call("hiagent-plugin-search", "web", None)[0] == {
        "api_key": "sk-op-1234", "region": "ap",
    }  # fmt: skip
