"""Logging for the server: level, plain or JSON lines, access log, and secret redaction.

Every line passes through `RedactingFormatter`, which masks secret config values the API has
seen (`hiagent_host.api.secrets.registry`), bearer tokens and configured API keys, after the
message, its arguments and any traceback have been formatted.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any, Final, TextIO

from hiagent_host.api.secrets import MASK, registry
from hiagent_host.config import LoggingConfig

TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")


class RedactingFormatter(logging.Formatter):
    """Format with `inner`, then mask every known secret in the finished line."""

    def __init__(self, inner: logging.Formatter, keys: Iterable[str] = ()) -> None:
        super().__init__()
        self._inner = inner
        self._keys = sorted((k for k in keys if k), key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(self._inner.format(record))

    def redact(self, text: str) -> str:
        text = registry.redact(text)
        for key in self._keys:
            text = text.replace(key, MASK)
        return _BEARER.sub(r"\1" + MASK, text)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, access fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            out.update(access)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(
    config: LoggingConfig, *, keys: Iterable[str] = (), stream: TextIO | None = None
) -> logging.Handler:
    """Send the host's logs to `stream` (stderr) at the configured level and format."""
    inner = JSONFormatter() if config.json else logging.Formatter(TEXT_FORMAT)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(RedactingFormatter(inner, keys))
    root = logging.getLogger()
    for old in list(root.handlers):  # the server owns its process's logging
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[config.level])
    access = logging.getLogger("hiagent_host.access")
    access.disabled = not config.access_log
    logging.captureWarnings(True)
    return handler
