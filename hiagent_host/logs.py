"""Logging for the server: level, plain or JSON lines, access log, and secret redaction.

Every line is masked by a `Redactor`: the secret config values of the call running in the
line's context (`hiagent_host.redact.active()`, set by the pool for each call), configured API
keys and bearer tokens, after the message, its arguments and any traceback have been formatted
(JSON lines: every string field, before encoding). The cost of a line depends on the call's
own secrets, never on how many calls came before.

A line costs little, as there is one per request (the access log): `access` formats the line
straight from the request's fields, without a `LogRecord` or the logging machinery, once
`configure` has set the server's handler up (before, or in an app embedded elsewhere, it is a
record on the `hiagent_host.access` logger). Timestamps are formatted once a second, records
carry no thread or process names (no format uses them), and the handler writes the lines
logged on the event loop's thread in one write, `BATCH_S` after the first of them
(`loop.call_later`; a line logged off the loop's thread is written at once, after any still
waiting; logging's shutdown at exit writes what is left). A process killed outright loses at
most the lines of its last `BATCH_S`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any, Final, TextIO

import msgspec

from hiagent_host.config import LoggingConfig
from hiagent_host.redact import MASK, Secrets, active

TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
ACCESS_LOGGER: Final = "hiagent_host.access"
# Lines logged on the event loop's thread leave together, at most this long after the first.
BATCH_S: Final = 0.02
# Fields that lead the text access-log line; the rest follow as key=value.
_HEAD: Final = frozenset({"method", "path", "status", "duration_s"})
# Control characters in caller-supplied text become "?" in the text access log.
_CONTROL: Final = dict.fromkeys([*range(32), 127], "?")
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
        if "bearer" not in text.lower():  # the usual line: no regex pass
            return text
        return _BEARER.sub(r"\1" + MASK, text)


class _SecondStamps:
    """A timestamp's text up to the second, made once per second (a line each request)."""

    def __init__(self, pattern: str, convert: Any) -> None:
        self._pattern = pattern
        self._convert = convert
        self._second = -1
        self._text = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._text = time.strftime(self._pattern, self._convert(second))
            self._second = second
        return self._text


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT` lines; `asctime` as logging's default (local time, `,mmm`)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._stamps = _SecondStamps("%Y-%m-%d %H:%M:%S", time.localtime)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return f"{self._stamps(record.created)},{_millis(record.created):03d}"

    def line(self, created: float, level: str, logger: str, message: str) -> str:
        """The line `format` makes of a record with these fields, made without one."""
        return f"{self._stamps(created)},{_millis(created):03d} {level:<7} {logger}: {message}"


def _millis(created: float) -> int:
    """The milliseconds of a timestamp, as `LogRecord.msecs` has them."""
    return int((created - int(created)) * 1000)


class RedactingFormatter(logging.Formatter):
    """Format with `inner`, then mask every secret in the finished line."""

    def __init__(self, inner: TextFormatter, redact: Redactor) -> None:
        super().__init__()
        self._inner = inner
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(self._inner.format(record))

    def line(
        self, created: float, level: str, logger: str, message: str, extra: dict[str, Any]
    ) -> str:
        """A masked line without a record (`extra` shows only in JSON lines)."""
        return self._redact(self._inner.line(created, level, logger, message))


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, access fields, exc.

    Every string is masked before it is encoded (an escaped secret would slip past a mask
    applied to the finished line).
    """

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact
        self._stamps = _SecondStamps("%Y-%m-%dT%H:%M:%S", time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        exc = self.formatException(record.exc_info) if record.exc_info else None
        extra = access if isinstance(access, dict) else {}
        return self.line(
            record.created, record.levelname, record.name, record.getMessage(), extra, exc
        )

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        extra: dict[str, Any],
        exc: str | None = None,
    ) -> str:
        """The JSON line of a record with these fields (`format`), or of none."""
        out: dict[str, Any] = {
            "ts": f"{self._stamps(created)}.{_millis(created):03d}Z",
            "level": level.lower(),
            "logger": logger,
            "message": message,
            **extra,
        }
        if exc is not None:
            out["exc"] = exc
        masked = {k: self._redact(v) if isinstance(v, str) else v for k, v in out.items()}
        return _json.encode(masked).decode()


def _as_text(value: Any) -> str:
    return str(value)


_json = msgspec.json.Encoder(enc_hook=_as_text)


class AccessLine:
    """The text of an access-log line (`POST /v1/X 200 0.0012s key=value …`), made on demand."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        f = self.fields
        rest = " ".join([f"{k}={v}" for k, v in f.items() if k not in _HEAD])
        line = f"{f['method']} {f['path']} {f['status']} {f['duration_s']:.4f}s {rest}"
        # Caller-supplied text on one line: control characters cannot forge log lines.
        return line if line.isprintable() else line.translate(_CONTROL)


class _AccessWriter:
    """Access-log lines from the configured formatter (no record each), to the handler. A line
    is made when its batch is written (`_AccessEntry`): one tight loop over the batch, off
    the request's path."""

    def __init__(self, handler: LineHandler, formatter: JSONFormatter | RedactingFormatter):
        self.handler = handler
        self.formatter = formatter

    def line(self, created: float, fields: dict[str, Any]) -> str:
        return self.formatter.line(created, "INFO", ACCESS_LOGGER, str(AccessLine(fields)), fields)


class _AccessEntry:
    """An access-log line still to be made (when its batch is written)."""

    __slots__ = ("created", "request", "writer")

    def __init__(self, writer: _AccessWriter, created: float, request: _Request) -> None:
        self.writer = writer
        self.created = created
        self.request = request

    def __str__(self) -> str:
        try:
            return self.writer.line(self.created, access_fields(*self.request))
        except Exception as exc:  # noqa: BLE001 (a line is never worth the batch it is in)
            note = f"access line of request {self.request[4]} not written: {type(exc).__name__}"
            return self.writer.formatter.line(self.created, "ERROR", ACCESS_LOGGER, note, {})


# What an access line is made of: method, path, status, seconds, request id, client, extras.
_Request = tuple[str, str, int, float, str, "tuple[str, int] | None", "dict[str, str] | None"]


def access_fields(
    method: str,
    path: str,
    status: int,
    seconds: float,
    request_id: str,
    client: tuple[str, int] | None,
    extra: dict[str, str] | None,
) -> dict[str, Any]:
    """The fields of an access line, in their order."""
    fields: dict[str, Any] = {
        "method": method,
        "path": path,
        "status": status,
        "duration_s": round(seconds, 6),
        "request_id": request_id,
    }
    if client:
        fields["client"] = f"{client[0]}:{client[1]}"
    if extra:
        fields.update(extra)
    return fields


_root = logging.getLogger()
_access_log = logging.getLogger(ACCESS_LOGGER)
_access_writer: _AccessWriter | None = None


def access(
    method: str,
    path: str,
    status: int,
    seconds: float,
    request_id: str,
    client: tuple[str, int] | None = None,
    extra: dict[str, str] | None = None,
) -> None:
    """Log one request: the access line, `extra` fields (package, tool, …) last."""
    request = (method, path, status, seconds, request_id, client, extra)
    writer = _access_writer
    if writer is not None and writer.handler in _root.handlers:  # still the server's handler
        writer.handler.write_line(_AccessEntry(writer, time.time(), request))
    elif _access_log.isEnabledFor(logging.INFO):
        fields = access_fields(*request)
        record = _access_log.makeRecord(
            ACCESS_LOGGER, logging.INFO, __file__, 0, AccessLine(fields), (), None
        )
        record.access = fields  # what `extra={"access": …}` does, without its key checks
        _access_log.handle(record)


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to its stream the lines logged on the event loop's thread in one write, `BATCH_S`
    after the first of them; a line logged off the loop's thread goes at once (after any
    waiting)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._lines: list[str | _AccessEntry] = []
        self._scheduled = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 (logging's contract: handleError reports it)
            self.handleError(record)
            return
        self.write_line(line)

    def write_line(self, line: str | _AccessEntry) -> None:
        """Write `line` (formatted already) with the batch, or at once off the loop."""
        self._lines.append(line)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop's thread: now, with any still waiting
            self.flush()
            return
        if not self._scheduled:  # else the flush due takes the line along
            self._scheduled = True
            loop.call_later(BATCH_S, self.flush)

    def flush(self) -> None:
        self.acquire()
        try:
            self._scheduled = False
            lines, self._lines = self._lines, []  # a line added meanwhile: still in `lines`
            if lines:
                self.stream.write("\n".join([str(line) for line in lines]) + "\n")
            super().flush()
        except (OSError, ValueError):  # the stream broke or was closed: nowhere to write
            pass
        finally:
            self.release()


def configure(
    config: LoggingConfig, *, keys: Iterable[str] = (), stream: TextIO | None = None
) -> logging.Handler:
    """Send the host's logs to `stream` (stderr) at the configured level and format."""
    redact = Redactor(keys)
    formatter: JSONFormatter | RedactingFormatter
    if config.json:
        formatter = JSONFormatter(redact)
    else:
        formatter = RedactingFormatter(TextFormatter(), redact)
    # Nothing the server's formats show; skipping them makes every record cheaper.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = LineHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):  # the server owns its process's logging
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[config.level])
    global _access_writer
    _access_log.disabled = not config.access_log
    writes_access = config.access_log and LEVELS[config.level] <= logging.INFO
    _access_writer = _AccessWriter(handler, formatter) if writes_access else None
    logging.captureWarnings(True)
    return handler
