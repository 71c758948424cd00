"""Masking secret strings in text: one compiled pattern per set of secrets, and the call's set.

`Secrets(values)` compiles once; `redact(text)` is then one regex pass over the text,
whatever the number of secrets. The rule for what is masked:

- A secret of `MIN_SUBSTRING_CHARS` or more characters is masked wherever it occurs, even
  inside a longer word (secret `pass` turns `password` into `***word`): an odd log line is
  better than a leak.
- A shorter secret is masked only where it stands alone (no letter, digit or `_` touching it),
  so a one-character secret does not wipe every such letter from a line.
- Where secrets overlap, or one contains another, the longest match wins.
- Each secret is also masked as JSON and Python `repr` would escape it (quotes, backslashes,
  non-ASCII), and a truncated rendering that keeps `FRAGMENT_CHARS` or more of its first or
  last characters (pydantic's `input_value='sk-abc...xyz'`) loses those characters too.
- An empty string is not a secret.

`scope(secrets)` makes a set active for the current context (a call's task); the log
formatter masks the active set in every line, so the cost of a line depends on the call's own
secrets only, never on how many were seen before.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any, Final

MASK: Final = "***"
MIN_SUBSTRING_CHARS: Final = 4
# A rendering of a secret at least twice this long is also masked by its head and tail runs.
FRAGMENT_CHARS: Final = 12
# A head or tail run is followed this far into the secret (bounds the compiled pattern).
MAX_FRAGMENT_SPAN: Final = 64
# JSON values are walked at most this deep (deeper values are left as they are; callers
# bound the depth of what they accept far below this).
MAX_DEPTH: Final = 256
# Compiled patterns kept for the sets of secrets found in lines (usually one or two secrets).
PATTERN_CACHE_SIZE: Final = 512
# The anchors of this many recent secrets are kept (a child's window rebuilds from them).
ANCHOR_CACHE_SIZE: Final = 4096


def renderings(secret: str) -> set[str]:
    """`secret` as it may appear in text: as is, JSON-escaped, `repr`-escaped."""
    forms = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        ascii(secret)[1:-1],
    }
    return {form for form in forms if form}


def _nested(chars: str) -> str:
    """`a(?:b(?:c)?)?`: as many of `chars`, from the left, as are there."""
    pattern = ""
    for char in reversed(chars):
        pattern = f"(?:{re.escape(char)}{pattern})?"
    return pattern


def _nested_left(chars: str) -> str:
    """`(?:(?:a)?b)?`: as many of `chars`, ending at the right, as are there."""
    pattern = ""
    for char in chars:
        pattern = f"(?:{pattern}{re.escape(char)})?"
    return pattern


def _alternatives(value: str) -> Iterator[tuple[int, str]]:
    """(length, pattern) for every way `value` is matched."""
    for form in renderings(value):
        if len(value) < MIN_SUBSTRING_CHARS:
            yield len(form), rf"(?<!\w){re.escape(form)}(?!\w)"
            continue
        yield len(form), re.escape(form)
        if len(form) >= 2 * FRAGMENT_CHARS:
            head, tail = form[:FRAGMENT_CHARS], form[-FRAGMENT_CHARS:]
            after = form[FRAGMENT_CHARS:MAX_FRAGMENT_SPAN]
            before = form[max(FRAGMENT_CHARS, len(form) - MAX_FRAGMENT_SPAN) : -FRAGMENT_CHARS]
            yield FRAGMENT_CHARS, re.escape(head) + _nested(after)
            yield FRAGMENT_CHARS, _nested_left(before) + re.escape(tail)


@functools.lru_cache(maxsize=ANCHOR_CACHE_SIZE)
def _anchors(value: str) -> tuple[tuple[str, str], ...]:
    """(anchor, value) pairs: every match of `value` contains at least one of the anchors."""
    found: set[str] = set()
    for form in renderings(value):
        if len(value) >= MIN_SUBSTRING_CHARS and len(form) >= 2 * FRAGMENT_CHARS:
            found.update((form[:FRAGMENT_CHARS], form[-FRAGMENT_CHARS:]))
        else:
            found.add(form)
    return tuple((anchor, value) for anchor in found)


@functools.lru_cache(maxsize=PATTERN_CACHE_SIZE)
def _pattern(values: frozenset[str]) -> re.Pattern[str]:
    """One pattern for `values`, longest alternatives first (the longest match wins)."""
    ranked = sorted({a for value in values for a in _alternatives(value)}, key=lambda a: -a[0])
    return re.compile("|".join(pattern for _, pattern in ranked))


class Secrets:
    """An immutable set of secret strings; `redact` masks them all in a piece of text.

    A line is first checked for cheap anchors (a short secret's renderings, a long one's head
    and tail); only the secrets found there are compiled into a pattern (cached), so a line
    without secrets costs a few substring searches and building a set costs no compilation.
    """

    __slots__ = ("_anchors", "values")

    def __init__(self, values: Iterable[str] = ()) -> None:
        self.values: frozenset[str] = frozenset(v for v in values if v)
        self._anchors = tuple(pair for value in self.values for pair in _anchors(value))

    def __bool__(self) -> bool:
        return bool(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def __or__(self, other: Secrets) -> Secrets:
        if not other.values or other.values <= self.values:
            return self
        if not self.values:
            return other
        return Secrets(self.values | other.values)

    def __repr__(self) -> str:  # never the values themselves
        return f"<Secrets: {len(self.values)}>"

    def redact(self, text: str) -> str:
        """`text` with every secret (and its renderings) replaced by `MASK`."""
        if not self._anchors or not text:
            return text
        found: set[str] | None = None
        for anchor, value in self._anchors:  # a loop, not a set built per line: most find none
            if anchor in text:
                if found is None:
                    found = set()
                found.add(value)
        return text if found is None else _pattern(frozenset(found)).sub(MASK, text)

    def redact_value(self, value: Any, depth: int = 0) -> Any:
        """`value` (any JSON) with every secret masked inside its strings and keys."""
        if not self._anchors or depth > MAX_DEPTH:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, list | tuple):
            return [self.redact_value(v, depth + 1) for v in value]
        if isinstance(value, dict):
            return {
                self.redact(k) if isinstance(k, str) else k: self.redact_value(v, depth + 1)
                for k, v in value.items()
            }
        return value


class SecretWindow:
    """The secrets of the last calls on something (a child's stderr), at most `size` values.

    Kept incrementally: adding a call's secrets and masking a line never rebuild anything
    (the anchors of each value are computed once), so both cost the same at any fill.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._values: dict[str, tuple[tuple[str, str], ...]] = {}  # insertion order = age

    def __len__(self) -> int:
        return len(self._values)

    def add(self, secrets: Secrets) -> None:
        for value in secrets.values:
            self._values.pop(value, None)  # seen again: now the youngest
            self._values[value] = _anchors(value)
        while len(self._values) > self._size:
            del self._values[next(iter(self._values))]

    def redact(self, text: str) -> str:
        """`text` with every secret of the window masked (the rule of `Secrets`)."""
        if not self._values or not text:
            return text
        found = frozenset(
            value
            for anchors in self._values.values()
            for anchor, value in anchors
            if anchor in text
        )
        return _pattern(found).sub(MASK, text) if found else text


NO_SECRETS: Final = Secrets()
_active: ContextVar[Secrets] = ContextVar("hiagent_active_secrets", default=NO_SECRETS)


def active() -> Secrets:
    """The secrets of the call running in this context (none outside a call)."""
    return _active.get()


def activate(secrets: Secrets) -> Token[Secrets] | None:
    """Make `secrets` active (with those already active) until `restore(token)`; None (and
    nothing done) when there are none."""
    return _active.set(_active.get() | secrets) if secrets else None


def restore(token: Token[Secrets] | None) -> None:
    """Undo the `activate` that returned `token`."""
    if token is not None:
        _active.reset(token)


@contextmanager
def scope(secrets: Secrets) -> Iterator[None]:
    """Make `secrets` active (with those already active) for the code inside."""
    token = activate(secrets)
    try:
        yield
    finally:
        restore(token)
