"""The tools /mcp exposes: every tool of every installed package that the allow/deny lists let
through, named (api/mcp/names.py), described in the caller's language, with its input schema.

Latest version of each package only, unless `mcp.expose_all_versions`: then older versions are
listed too, under versioned names, and the plain name always means the latest. The catalog is
rebuilt from the package records for every `tools/list` and when a call names a tool the last
build did not have (the records may have changed in another process); calls otherwise resolve
names against the last build.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import anyio
import mcp_types as types
from packaging.utils import canonicalize_name
from packaging.version import Version

from hiagent_host.api.mcp import names
from hiagent_host.config import McpConfig, McpLanguage
from hiagent_host.packages import PackageManager, PackageRecord

# Where a listed tool says which HiAgent tool it is (MCP `_meta` keys are namespaced).
META_KEY: Final = "io.hiagent/tool"
# Label languages in the order tried after the one asked for.
LANGUAGES: Final[tuple[McpLanguage, ...]] = ("en", "zh_hans", "zh_hant")
STREAM_FEATURE: Final = "stream"


@dataclass(frozen=True)
class ToolEntry:
    """One exposed tool: its MCP name and the HiAgent tool behind it."""

    name: str
    package: str  # as the record spells it
    version: str
    plugin: str
    tool: str
    streams: bool
    input_schema: dict[str, Any]
    titles: Mapping[str, str]  # language → "Plugin: Tool"
    descriptions: Mapping[str, str]  # language → description

    @property
    def identity(self) -> str:
        return f"{canonicalize_name(self.package)}/{self.version}/{self.plugin}/{self.tool}"

    def as_tool(self, language: McpLanguage) -> types.Tool:
        return types.Tool(
            name=self.name,
            title=self.titles[language],
            description=self.descriptions[language],
            input_schema=self.input_schema,
            _meta={
                META_KEY: {
                    "pkg": self.package,
                    "version": self.version,
                    "plugin": self.plugin,
                    "tool": self.tool,
                    "stream": self.streams,
                }
            },
        )


@dataclass(frozen=True)
class Catalog:
    entries: Sequence[ToolEntry] = ()
    by_name: Mapping[str, ToolEntry] = field(default_factory=dict)


class ToolCatalog:
    """The exposed tools of one package store under one `[mcp]` configuration."""

    def __init__(self, packages: PackageManager, config: McpConfig) -> None:
        self._packages = packages
        self._filter = Exposure(config)
        self._all_versions = config.expose_all_versions
        self.current = Catalog()

    async def refresh(self) -> Catalog:
        """Rebuild from the records (in a worker thread: it reads files)."""
        records = await anyio.to_thread.run_sync(self._packages.list)
        self.current = build(records, self._filter, all_versions=self._all_versions)
        return self.current

    async def find(self, name: str) -> ToolEntry | None:
        """The tool named `name`, looked up again in fresh records if the last build lacks it."""
        entry = self.current.by_name.get(name)
        if entry is None:
            entry = (await self.refresh()).by_name.get(name)
        return entry


class Exposure:
    """The allow/deny lists: shell-style patterns; deny wins; an empty allow-list allows all.

    Package patterns match the PEP 503 name; tool patterns match the MCP name or
    `<package>/<plugin>/<tool>` (PEP 503 package name, plugin and tool as the metadata spells
    them).
    """

    def __init__(self, config: McpConfig) -> None:
        self._allow_packages = [str(canonicalize_name(p)) for p in config.allow_packages]
        self._deny_packages = [str(canonicalize_name(p)) for p in config.deny_packages]
        self._allow_tools = list(config.allow_tools)
        self._deny_tools = list(config.deny_tools)

    def package(self, name: str) -> bool:
        canonical = str(canonicalize_name(name))
        return _allowed((canonical,), self._allow_packages, self._deny_packages)

    def tool(self, name: str, package: str, plugin: str, tool: str) -> bool:
        keys = (name, f"{canonicalize_name(package)}/{plugin}/{tool}")
        return _allowed(keys, self._allow_tools, self._deny_tools)


def _allowed(keys: Iterable[str], allow: list[str], deny: list[str]) -> bool:
    keys = tuple(keys)
    if any(fnmatch.fnmatchcase(k, p) for k in keys for p in deny):
        return False
    return not allow or any(fnmatch.fnmatchcase(k, p) for k in keys for p in allow)


def build(records: Iterable[PackageRecord], exposure: Exposure, *, all_versions: bool) -> Catalog:
    """The catalog of `records` (see the module docstring)."""
    latest: dict[str, Version] = {}
    for record in records:
        key = str(canonicalize_name(record.name))
        latest[key] = max(latest.get(key, Version(record.version)), Version(record.version))
    candidates: list[ToolEntry] = []
    for record in records:
        if not exposure.package(record.name):
            continue
        is_latest = Version(record.version) == latest[str(canonicalize_name(record.name))]
        if not (is_latest or all_versions):
            continue
        version = None if is_latest else record.version
        candidates += [
            e
            for e in _entries(record, version)
            if exposure.tool(e.name, e.package, e.plugin, e.tool)
        ]
    entries: list[ToolEntry] = []
    by_name: dict[str, ToolEntry] = {}
    for entry in sorted(candidates, key=lambda e: (e.name, e.identity)):
        if entry.name in by_name:  # a rare collision: the later identity gets a hashed name
            entry = replace(entry, name=names.disambiguated(entry.name, entry.identity))
        by_name[entry.name] = entry
        entries.append(entry)
    return Catalog(entries, by_name)


def _entries(record: PackageRecord, version: str | None) -> list[ToolEntry]:
    out = []
    for plugin in record.plugins:
        meta = record.metadata.get(plugin) or {}
        plugin_titles = _labels(meta, "name", plugin)
        plugin_texts = _labels(meta, "description", str(meta.get("description") or ""))
        for tool, tmeta in (meta.get("tools") or {}).items():
            tool_titles = _labels(tmeta, "name", tool)
            texts = _labels(tmeta, "description", str(tmeta.get("description") or tool))
            features = tmeta.get("runtime_features") or []
            out.append(
                ToolEntry(
                    name=names.tool_name(record.name, plugin, tool, version=version),
                    package=record.name,
                    version=record.version,
                    plugin=plugin,
                    tool=tool,
                    streams=bool(tmeta.get("stream_func_name")) or STREAM_FEATURE in features,
                    input_schema=_object_schema(tmeta.get("input_schema")),
                    titles={
                        lang: f"{plugin_titles[lang]}: {tool_titles[lang]}" for lang in LANGUAGES
                    },
                    descriptions={
                        lang: _describe(texts[lang], plugin_titles[lang], plugin_texts[lang])
                        for lang in LANGUAGES
                    },
                )
            )
    return out


def _labels(meta: Mapping[str, Any], kind: str, default: str) -> dict[str, str]:
    """`labels.<kind>_<language>` for each language, falling back through LANGUAGES."""
    labels = meta.get("labels") or {}
    found = {lang: labels.get(f"{kind}_{lang}") for lang in LANGUAGES}
    out: dict[str, str] = {}
    for lang in LANGUAGES:
        order = (lang, *(other for other in LANGUAGES if other != lang))
        text = next((found[o] for o in order if isinstance(found[o], str) and found[o]), None)
        out[lang] = text or default
    return out


def _describe(tool_text: str, plugin_title: str, plugin_text: str) -> str:
    if not plugin_text:
        return tool_text
    return f"{tool_text}\n\n{plugin_title}: {plugin_text}"


def _object_schema(schema: Any) -> dict[str, Any]:
    """MCP needs an object schema for a tool's input; metadata without one accepts anything."""
    if not isinstance(schema, dict) or not schema:
        return {"type": "object"}
    return schema if schema.get("type") == "object" else {"type": "object", **schema}


def language_of(accept_language: str | None, default: McpLanguage) -> McpLanguage:
    """The first language of an `Accept-Language` header that tools are described in."""
    if not accept_language:
        return default
    tags = []
    for index, item in enumerate(accept_language.split(",")):
        tag, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            tags.append((-q, index, tag.strip().lower()))
    for _, _, tag in sorted(tags):
        if tag.startswith("zh"):
            hant = any(mark in tag for mark in ("hant", "-tw", "-hk", "-mo"))
            return "zh_hant" if hant else "zh_hans"
        if tag.startswith("en"):
            return "en"
    return default
