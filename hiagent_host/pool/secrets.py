"""Which values of a call's cfg are secret: `x-hiagent-secret` in the plugin's config schema.

A tool call's cfg is read against the plugin's `config_schema`; every string under a property
marked `"x-hiagent-secret": true` (directly, through `anyOf`/`allOf`/`oneOf`, or a `$ref` to
`$defs`) is a secret. The pool masks them (`hiagent_host.redact`) in the errors a call raises,
in the log lines written while it runs, and in the plugin process's stderr.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any, Final

from hiagent_host.errors import HostError
from hiagent_host.packages import PackageRecord
from hiagent_host.redact import NO_SECRETS, Secrets

MARK: Final = "x-hiagent-secret"
# Schemas come from plugins ($refs may cycle): the walk never goes deeper than this. The
# strings under a secret property are collected at any depth.
MAX_DEPTH: Final = 32


def call_secrets(record: PackageRecord, plugin: str, cfg: Mapping[str, Any] | None) -> Secrets:
    """The secrets in `cfg` of a call on `plugin` of the package `record` describes."""
    if not cfg:
        return NO_SECRETS
    metadata = record.metadata.get(plugin)
    schema = metadata.get("config_schema") if isinstance(metadata, Mapping) else None
    values = secret_values(schema, cfg)
    return Secrets(values) if values else NO_SECRETS


def scrub(exc: HostError, secrets: Secrets) -> HostError:
    """`exc` (same class and code) with every secret masked in its message and data."""
    if not secrets:
        return exc
    clean = copy.copy(exc)
    clean.message = secrets.redact(exc.message)
    clean.args = (clean.message,)
    clean.data = secrets.redact_value(exc.data)
    return clean


def secret_values(schema: Mapping[str, Any] | None, cfg: Mapping[str, Any] | None) -> list[str]:
    """Every string in `cfg` that `schema` marks secret, longest first."""
    if not schema or not cfg:
        return []
    defs = schema.get("$defs") or schema.get("definitions") or {}
    found = set(_collect(schema, cfg, defs if isinstance(defs, Mapping) else {}, 0))
    return sorted(found, key=len, reverse=True)


def _collect(
    schema: Mapping[str, Any], value: Any, defs: Mapping[str, Any], depth: int
) -> Iterator[str]:
    if depth > MAX_DEPTH:
        return
    if _is_secret(schema, defs, depth):
        yield from _strings(value)
        return
    for sub in _alternatives(schema, defs):
        yield from _collect(sub, value, defs, depth + 1)
    if isinstance(value, Mapping):
        props = schema.get("properties")
        if isinstance(props, Mapping):
            for key, sub in props.items():
                if key in value and isinstance(sub, Mapping):
                    yield from _collect(sub, value[key], defs, depth + 1)
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            known = props if isinstance(props, Mapping) else {}
            for key, item in value.items():
                if key not in known:
                    yield from _collect(extra, item, defs, depth + 1)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for item in value:
                yield from _collect(items, item, defs, depth + 1)


def _is_secret(schema: Mapping[str, Any], defs: Mapping[str, Any], depth: int) -> bool:
    if schema.get(MARK) is True:
        return True
    if depth > MAX_DEPTH:
        return False
    return any(
        sub.get(MARK) is True
        for sub in _alternatives(schema, defs)
        if not sub.get("properties")  # a marked model inside a union is handled by recursion
    )


def _alternatives(
    schema: Mapping[str, Any], defs: Mapping[str, Any]
) -> Iterator[Mapping[str, Any]]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.rsplit("/", 1)[-1] in defs:
        target = defs[ref.rsplit("/", 1)[-1]]
        if isinstance(target, Mapping):
            yield target
    for key in ("anyOf", "allOf", "oneOf"):
        subs = schema.get(key)
        if isinstance(subs, list):
            yield from (s for s in subs if isinstance(s, Mapping))


def _strings(value: Any) -> Iterator[str]:
    """Every non-empty string inside `value`, at any depth (no recursion)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if item:
                yield item
        elif isinstance(item, Mapping):
            pending += item.values()
        elif isinstance(item, list):
            pending += item
