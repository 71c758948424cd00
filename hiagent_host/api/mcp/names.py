"""MCP tool names: `<package>__<plugin>__<tool>`, within MCP's naming rules, stable across restarts.

MCP allows 1-128 characters from `A-Z a-z 0-9 _ - .`. Each part is made to fit on its own:

- package: the PEP 503 name (`hiagent-plugin-clock`); an older version exposed beside the
  latest (`mcp.expose_all_versions`) adds `_v<version>` with the PEP 440 normal form, any
  character outside the alphabet (`+`, `!`) becoming `_` (`hiagent-plugin-clock_v0.1.0`).
  PEP 503 names never contain `_`, so `_v` cannot be part of a package name.
- plugin and tool: NFC-normalised; every ASCII character outside the alphabet becomes `_`;
  a part with any non-ASCII character is then written as `xn--` + its Punycode (RFC 3492, as
  in internationalised domain names), so `时间工具` becomes `xn--h6qv61a8ige15c`: the same
  name always gives the same part, and the original can be recovered from it.
- A name longer than 128 characters keeps its first 119 and ends with `-` and 8 hex digits of
  the SHA-256 of the untruncated name.

Names are a function of (package, version, plugin, tool) alone, so they do not change when
other packages come and go; two tools that still end up with one name are told apart in the
catalog (api/mcp/catalog.py).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Final

from packaging.utils import canonicalize_name
from packaging.version import Version

SEPARATOR: Final = "__"
VERSION_MARK: Final = "_v"
MAX_NAME_CHARS: Final = 128
HASH_CHARS: Final = 8
PUNYCODE_PREFIX: Final = "xn--"
VALID: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")
_OUTSIDE: Final = re.compile(r"[^A-Za-z0-9._-]")


def part(text: str) -> str:
    """A plugin or tool name as a name part (see the module docstring)."""
    text = unicodedata.normalize("NFC", text)
    # ASCII characters outside the alphabet first; Punycode copies ASCII through unchanged.
    text = "".join("_" if ch.isascii() and _OUTSIDE.match(ch) else ch for ch in text)
    if not text.isascii():
        text = PUNYCODE_PREFIX + text.encode("punycode").decode("ascii")
    return text or "_"


def package_part(name: str, version: str | None = None) -> str:
    """The package part; with `version`, the versioned form of an older version."""
    base = str(canonicalize_name(name))
    if version is None:
        return base
    return base + VERSION_MARK + _OUTSIDE.sub("_", str(Version(version)))


def tool_name(package: str, plugin: str, tool: str, *, version: str | None = None) -> str:
    """The MCP name of a tool (`version` only for an older version exposed beside the latest)."""
    name = SEPARATOR.join((package_part(package, version), part(plugin), part(tool)))
    return fit(name)


def fit(name: str) -> str:
    """`name` cut to MCP's length limit, with a hash of the whole so cut names stay distinct."""
    if len(name) <= MAX_NAME_CHARS:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:HASH_CHARS]
    return f"{name[: MAX_NAME_CHARS - HASH_CHARS - 1]}-{digest}"


def disambiguated(name: str, identity: str) -> str:
    """A second tool whose name is already taken: `name` with a hash of its identity."""
    digest = hashlib.sha256(identity.encode()).hexdigest()[:HASH_CHARS]
    return fit(f"{name[: MAX_NAME_CHARS - HASH_CHARS - 1]}-{digest}")
