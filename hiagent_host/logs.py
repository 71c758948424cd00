"""Logging for the server: level, plain or JSON lines, access log, and secret redaction.

Every line is masked by a `Redactor`: the secret config values of the call running in the
line's context (`hiagent_host.redact.active()`, set by the pool for each call), configured API
keys and bearer tokens, after the message, its arguments and any traceback have been formatted
(JSON lines: every string field, before encoding). The cost of a line depends on the call's
own secrets, never on how many calls came before.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any, Final, TextIO

from hiagent_host.config import LoggingConfig
from hiagent_host.redact import MASK, Secrets, active

TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")


class Redactor:
    """Masks the active call's secrets, configured API keys and bearer tokens in text."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._keys = Secrets(keys)

    def __call__(self, text: str) -> str:
        text = self._keys.redact(active().redact(text))
        return _BEARER.sub(r"\1" + MASK, text)


class RedactingFormatter(logging.Formatter):
    """Format with `inner`, then mask every secret in the finished line."""

    def __init__(self, inner: logging.Formatter, redact: Redactor) -> None:
        super().__init__()
        self._inner = inner
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(self._inner.format(record))


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, access fields, exc.

    Every string is masked before it is encoded (an escaped secret would slip past a mask
    applied to the finished line).
    """

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

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
        masked = {k: self._redact(v) if isinstance(v, str) else v for k, v in out.items()}
        return json.dumps(masked, ensure_ascii=False, default=str)


def configure(
    config: LoggingConfig, *, keys: Iterable[str] = (), stream: TextIO | None = None
) -> logging.Handler:
    """Send the host's logs to `stream` (stderr) at the configured level and format."""
    redact = Redactor(keys)
    formatter: logging.Formatter
    if config.json:
        formatter = JSONFormatter(redact)
    else:
        formatter = RedactingFormatter(logging.Formatter(TEXT_FORMAT), redact)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):  # the server owns its process's logging
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[config.level])
    access = logging.getLogger("hiagent_host.access")
    access.disabled = not config.access_log
    logging.captureWarnings(True)
    return handler
