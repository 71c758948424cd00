"""Secret config values: found through `x-hiagent-secret` in a plugin's config schema, redacted.

A tool call's cfg is read against the plugin's `config_schema`; every string under a property
marked `"x-hiagent-secret": true` (directly, through `anyOf`/`allOf`/`oneOf`, or a `$ref` to
`$defs`) is a secret. Secrets are scrubbed from error messages sent back to the caller and
remembered in the process-wide `registry`, which the log formatter consults for every line.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

MARK: Final = "x-hiagent-secret"
MASK: Final = "***"
# The registry forgets the oldest secrets beyond this many (bounded memory, bounded cost per
# log line); a secret seen again is refreshed.
REGISTRY_SIZE: Final = 4096
# Shorter values are scrubbed from the caller's error messages but not from every log line
# (masking "a" everywhere would make the logs unreadable, and cannot protect a 1-char secret).
MIN_LOG_SECRET_CHARS: Final = 4
# Schemas and configs are caller-controlled: never recurse deeper than this.
MAX_DEPTH: Final = 10


class SecretRegistry:
    """Secret strings seen recently; `redact(text)` masks every one of them in `text`."""

    def __init__(self, size: int = REGISTRY_SIZE) -> None:
        self._size = size
        self._values: OrderedDict[str, None] = OrderedDict()
        self._sorted: list[str] = []
        self._lock = threading.Lock()

    def add(self, values: Iterable[str]) -> None:
        with self._lock:
            for value in values:
                if len(value) < MIN_LOG_SECRET_CHARS:
                    continue
                self._values[value] = None
                self._values.move_to_end(value)
            while len(self._values) > self._size:
                self._values.popitem(last=False)
            # longest first, so a secret containing another is masked whole
            self._sorted = sorted(self._values, key=len, reverse=True)

    def __len__(self) -> int:
        return len(self._values)

    def redact(self, text: str) -> str:
        return redact(text, self._sorted) if self._sorted else text


registry: Final = SecretRegistry()


def redact(text: str, secrets: Iterable[str]) -> str:
    for value in secrets:
        if value and value in text:
            text = text.replace(value, MASK)
    return text


def redact_value(value: Any, secrets: list[str], depth: int = 0) -> Any:
    """`value` (any JSON) with every secret masked inside its strings."""
    if not secrets or depth > MAX_DEPTH:
        return value
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, list):
        return [redact_value(v, secrets, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: redact_value(v, secrets, depth + 1) for k, v in value.items()}
    return value


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
        yield from _strings(value, depth)
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


def _strings(value: Any, depth: int) -> Iterator[str]:
    if depth > MAX_DEPTH:
        return
    if isinstance(value, str):
        if value:
            yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, depth + 1)
