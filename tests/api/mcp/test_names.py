"""MCP tool names: within the naming rules, stable, non-ASCII plugin names as Punycode."""

from __future__ import annotations

import pytest

from hiagent_host.api.mcp.names import MAX_NAME_CHARS, VALID, disambiguated, part, tool_name


def test_a_name_is_package_plugin_and_tool_joined_by_double_underscores() -> None:
    assert tool_name("hiagent_plugin.Echo", "echo", "echo") == "hiagent-plugin-echo__echo__echo"


def test_a_chinese_plugin_name_becomes_punycode_that_decodes_back() -> None:
    name = tool_name("hiagent-plugin-clock", "时间工具", "current_time")
    assert name == "hiagent-plugin-clock__xn--h6qv61a8ige15c__current_time"
    assert b"h6qv61a8ige15c".decode("punycode") == "时间工具"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web search", "web_search"),
        ("a/b:c", "a_b_c"),
        ("ok.name-1", "ok.name-1"),
        ("Web 搜索", "xn--Web_-"),  # ASCII first, then the Punycode of the rest
        ("ｅｃｈｏ", "xn--"),  # NFC keeps full-width letters: not ASCII
        ("", "_"),
    ],
)  # fmt: skip
def test_each_part_keeps_only_the_allowed_characters(text: str, expected: str) -> None:
    assert part(text).startswith(expected)
    assert VALID.fullmatch(part(text))


def test_an_older_version_is_named_with_its_normal_form() -> None:
    name = tool_name("hiagent-plugin-echo", "echo", "echo", version="1.0+Local.7")
    assert name == "hiagent-plugin-echo_v1.0_local.7__echo__echo"
    assert VALID.fullmatch(name)


def test_a_long_name_is_cut_with_a_hash_of_the_whole() -> None:
    one = tool_name("p" * 80, "q" * 40, "a" * 30)
    other = tool_name("p" * 80, "q" * 40, "b" * 30)
    assert len(one) == len(other) == MAX_NAME_CHARS
    assert one != other
    assert VALID.fullmatch(one)


def test_names_do_not_depend_on_anything_but_the_tool() -> None:
    assert tool_name("x", "时间工具", "t") == tool_name("X", "时间工具", "t")
    assert disambiguated("a__b__c", "x/1/b/c") == disambiguated("a__b__c", "x/1/b/c")
    assert disambiguated("a__b__c", "x/1/b/c") != disambiguated("a__b__c", "y/1/b/c")
