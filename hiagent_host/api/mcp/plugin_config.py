"""Plugin config (credentials) for MCP calls: the operator's file, then the connection's header.

The operator's file (`mcp.config_file`, TOML) holds one table per package and plugin:

    ["hiagent-plugin-search"."web_search"]
    api_key = "sk-..."

It is read at start-up (a bad file stops the server) and again whenever it changes on disk (a
bad edit is logged and the previous content kept). A client may send `X-HiAgent-Config: <JSON
object>` on its requests (unless `mcp.client_config = false`): keys are `"<package>"` (every
plugin of the package) or `"<package>/<plugin>"`, values are config objects. A call's config is
the operator's table, overlaid key by key with the package entry, then the plugin entry of the
header. Values never leave the host: the header is never logged, and every string of the
operator's table is handed to the pool as the call's secrets (masked in errors, logs and the
plugin's stderr); the header's values are masked by their config schema like any cfg.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import msgspec
from packaging.utils import canonicalize_name

from hiagent_host.api import requests
from hiagent_host.errors import FORBIDDEN, ConfigError, HostError
from hiagent_host.pool import secrets

log = logging.getLogger(__name__)

HEADER: Final = "x-hiagent-config"
PLUGIN_SEPARATOR: Final = "/"
# A schema under which every string of a config is secret (the operator's values all are).
EVERY_VALUE: Final = {secrets.MARK: True}

Table = dict[str, dict[str, dict[str, Any]]]  # PEP 503 package name → plugin → config


class PluginConfig:
    """The config a call runs with (see the module docstring)."""

    def __init__(self, path: Path | None, *, client_config: bool) -> None:
        self._path = path
        self._client_config = client_config
        self._lock = threading.Lock()
        self._identity: tuple[int, int, int] | None = None
        self._table: Table = {}
        if path is not None:
            self._table, self._identity = _load(path)

    def for_call(
        self, package: str, plugin: str, headers: Mapping[str, str] | None
    ) -> tuple[dict[str, Any] | None, list[str]]:
        """The call's config and the operator's values in it (never to be shown to the caller)."""
        key = str(canonicalize_name(package))
        stored = self._current().get(key, {}).get(plugin)
        cfg: dict[str, Any] = dict(stored or {})
        given = self._from_header(headers)
        for entry in (given.get(key), given.get(f"{key}{PLUGIN_SEPARATOR}{plugin}")):
            if entry:
                cfg.update(entry)
        hidden = secrets.secret_values(EVERY_VALUE, stored)  # the operator's values: all secret
        return (cfg or None), hidden

    def _from_header(self, headers: Mapping[str, str] | None) -> dict[str, dict[str, Any]]:
        raw = headers.get(HEADER) if headers is not None else None
        if raw is None or not raw.strip():
            return {}
        if not self._client_config:  # the header carries secrets: never logged nor echoed
            raise HostError(
                f"this host takes no plugin config from clients (header {HEADER} is refused); "
                "the operator configures plugins in mcp.config_file",
                code=FORBIDDEN,
                http_status=403,
            )
        try:
            value = msgspec.json.decode(raw.encode("latin-1"))
        except (msgspec.DecodeError, UnicodeEncodeError):
            raise requests.bad_request(f"header {HEADER} is not valid JSON", field=HEADER) from None
        except RecursionError:
            raise requests.too_deep(f"header {HEADER}", HEADER) from None
        requests.check_depth(value, f"header {HEADER}", HEADER)
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise requests.invalid(
                f'header {HEADER} must be a JSON object of config objects: {{"<package>" or '
                '"<package>/<plugin>": {...}}',
                HEADER,
            )
        out = {}
        for name, entry in value.items():
            package, sep, plugin = name.partition(PLUGIN_SEPARATOR)
            out[f"{canonicalize_name(package)}{sep}{plugin}"] = entry
        return out

    def _current(self) -> Table:
        """The operator's table, re-read if the file changed (a bad edit keeps the old one)."""
        if self._path is None:
            return self._table
        try:
            identity = _identity(self._path.stat())
        except OSError:
            return self._table
        if identity == self._identity:
            return self._table
        with self._lock:
            if identity != self._identity:
                try:
                    self._table, self._identity = _load(self._path)
                    log.info("re-read the MCP plugin config file %s", self._path)
                except ConfigError as exc:
                    self._identity = identity
                    log.error("%s; keeping the previous plugin config", exc.message)
        return self._table


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _load(path: Path) -> tuple[Table, tuple[int, int, int]]:
    """The file's table; ConfigError naming the problem (never a value) if it is unusable."""
    try:
        st = path.stat()
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"mcp.config_file: cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        # the parser's message quotes no values, only where the problem is
        raise ConfigError(f"mcp.config_file: {path} is not valid TOML: {exc}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("mcp.config_file %s holds credentials but others may read it", path)
    table: Table = {}
    problems = []
    for package, plugins in data.items():
        if not isinstance(plugins, dict) or not all(isinstance(c, dict) for c in plugins.values()):
            problems.append(f"[{package!r}] must hold one table per plugin")
            continue
        table.setdefault(str(canonicalize_name(package)), {}).update(plugins)
    if problems:
        raise ConfigError(f"mcp.config_file: {path}: " + "; ".join(problems))
    return table, _identity(st)
