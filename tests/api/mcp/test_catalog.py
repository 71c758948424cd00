"""The catalog: latest versions (or all), allow/deny lists, languages, collisions."""

from __future__ import annotations

from typing import Any

import pytest

from hiagent_host.api.mcp.catalog import Exposure, build, language_of
from hiagent_host.config import McpConfig
from hiagent_host.packages import PackageRecord

CLOCK_META: dict[str, Any] = {
    "name": "时间工具",
    "description": "查询任意时区的当前时间。",
    "labels": {
        "name_en": "Clock", "name_zh_hans": "时间工具", "name_zh_hant": "時間工具",
        "description_en": "Tells the time.", "description_zh_hans": "查询时间。",
    },
    "tools": {
        "now": {
            "name": "now", "description": "The time now.",
            "labels": {"name_en": "Now", "name_zh_hans": "现在",
                       "description_en": "The time now.", "description_zh_hans": "现在的时间。"},
            "input_schema": {"properties": {"tz": {"type": "string"}}, "title": "InModel"},
            "stream_func_name": None, "runtime_features": [],
        },
        "ticks": {"name": "ticks", "description": "", "input_schema": {"type": "object"},
                  "stream_func_name": "ticks_stream", "runtime_features": ["stream"]},
    },
}  # fmt: skip


def record(name: str, version: str, plugins: dict[str, dict[str, Any]]) -> PackageRecord:
    return PackageRecord(
        name=name, version=version, dir_name=name, version_dir=version, build="b",
        wheel_sha256="0" * 64, wheel_size=1, uri="file:///w.whl", filename="w.whl",
        installed_at="2026-01-01T00:00:00Z", plugins=list(plugins), metadata=plugins,
        dependencies=[], venv_path="v", disk_size_bytes=1, python_version="3.11", installer="uv",
    )  # fmt: skip


RECORDS = [
    record("hiagent-plugin-clock", "0.1.0", {"时间工具": CLOCK_META}),
    record("hiagent-plugin-clock", "0.2.0", {"时间工具": CLOCK_META}),
    record("other", "1.0", {"o": {"tools": {"t": {"description": "T."}}}}),
]
NOW = "hiagent-plugin-clock__xn--h6qv61a8ige15c__now"


def test_only_the_latest_version_is_listed_by_default() -> None:
    catalog = build(RECORDS, Exposure(McpConfig()), all_versions=False)
    assert [e.name for e in catalog.entries] == [
        NOW, "hiagent-plugin-clock__xn--h6qv61a8ige15c__ticks", "other__o__t",
    ]  # fmt: skip
    assert catalog.by_name[NOW].version == "0.2.0"
    assert catalog.by_name["hiagent-plugin-clock__xn--h6qv61a8ige15c__ticks"].streams


def test_all_versions_adds_the_older_ones_under_versioned_names() -> None:
    catalog = build(RECORDS, Exposure(McpConfig()), all_versions=True)
    assert catalog.by_name[NOW].version == "0.2.0"
    older = catalog.by_name["hiagent-plugin-clock_v0.1.0__xn--h6qv61a8ige15c__now"]
    assert older.version == "0.1.0"


def test_descriptions_and_titles_come_in_the_language_asked_for() -> None:
    entry = build(RECORDS, Exposure(McpConfig()), all_versions=False).by_name[NOW]
    english, chinese = entry.as_tool("en"), entry.as_tool("zh_hans")
    assert english.title == "Clock: Now"
    assert english.description == "The time now.\n\nClock: Tells the time."
    assert chinese.title == "时间工具: 现在"
    assert chinese.description == "现在的时间。\n\n时间工具: 查询时间。"
    # no zh_hant tool label: the next language in line
    assert entry.as_tool("zh_hant").title == "時間工具: Now"
    assert english.input_schema == {
        "type": "object", "properties": {"tz": {"type": "string"}}, "title": "InModel"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (McpConfig(deny_packages=["hiagent_plugin_clock"]), {"other__o__t"}),
        (McpConfig(allow_packages=["other"]), {"other__o__t"}),
        (McpConfig(allow_tools=["*__now"]), {NOW}),
        (McpConfig(deny_tools=["hiagent-plugin-clock/时间工具/*"]), {"other__o__t"}),
        (McpConfig(allow_packages=["hiagent-plugin-*"], deny_tools=["*ticks"]), {NOW}),
    ],
)  # fmt: skip
def test_allow_and_deny_lists_choose_what_is_exposed(config: McpConfig, expected: set[str]) -> None:
    assert set(build(RECORDS, Exposure(config), all_versions=False).by_name) == expected


def test_two_tools_with_one_name_are_told_apart() -> None:
    records = [record("p", "1", {"a b": {"tools": {"t": {}}}, "a_b": {"tools": {"t": {}}}})]
    catalog = build(records, Exposure(McpConfig()), all_versions=False)
    assert len(catalog.entries) == 2
    assert catalog.by_name["p__a_b__t"].plugin == "a b"  # "p/1/a b/t" sorts first
    [renamed] = [n for n in catalog.by_name if n != "p__a_b__t"]
    assert renamed.startswith("p__a_b__t-")
    assert catalog.by_name[renamed].plugin == "a_b"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "en"), ("", "en"), ("fr", "en"), ("zh-CN", "zh_hans"), ("zh-Hant-TW", "zh_hant"),
        ("zh-TW,en;q=0.5", "zh_hant"), ("en-US,zh;q=0.9", "en"),
        ("fr,zh;q=0.8,en;q=0.5", "zh_hans"), ("zh;q=0,en", "en"),
    ],
)  # fmt: skip
def test_the_language_is_the_first_known_one_of_accept_language(
    header: str | None, expected: str
) -> None:
    assert language_of(header, "en") == expected
