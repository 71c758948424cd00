"""How the command line prints: a package record as text, and install progress on stderr.

On a terminal, progress is one status line rewritten in place (spinner, phase, bytes
downloaded, elapsed seconds); anywhere else it is plain text, one line per change, with no
control characters, so that logs and pipes stay readable.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Final, TextIO

SPINNER: Final = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
MIB: Final = 1024 * 1024


def add_json_option(
    parser: argparse.ArgumentParser, help: str = "print the result (and errors) as JSON"
) -> None:
    """`--json` on a subcommand; its default is suppressed, so `hiagent-host --json CMD` works."""
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=help)


def size(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


def render_record(data: dict[str, Any]) -> str:
    """A package record (`hiagent-host show`, `install`) as aligned text."""
    lines = [
        f"{data['name']} {data['version']}",
        f"  plugins:      {', '.join(data['plugins'])}",
        f"  venv:         {data['venv_path']}  (real directory {data['build']})",
        f"  installed at: {data['installed_at']} with {data['installer']}",
        f"  python:       {data['python_version']}",
        f"  wheel:        {data['filename']} ({data['wheel_size']} bytes)",
        f"  sha256:       {data['wheel_sha256']}",
        f"  from:         {data['uri']}",
        f"  disk size:    {size(data['disk_size_bytes'])}",
        "  dependencies: "
        + ", ".join(f"{d['name']}=={d['version']}" for d in data["dependencies"]),
    ]
    return "\n".join(lines)


def _bytes(done: int, total: int | None) -> str:
    if total:
        return f"{size(done)} of {size(total)} ({100 * done // total}%)"
    return size(done)


class ProgressLine:
    """An install's progress on `stream`: in place on a terminal, line by line otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last = ""
        self.ticks = 0
        self.started = time.monotonic()
        self.downloaded: tuple[int, int | None] | None = None

    def show(self, status: str | None, phase: str | None) -> None:
        """The job's status (None for an install in this process) and phase."""
        text = " ".join(p for p in (f"{status}:" if status and phase else status, phase) if p)
        if phase != "downloading":
            self.downloaded = None
        if self.tty:
            self.ticks += 1
            elapsed = time.monotonic() - self.started
            spin = SPINNER[self.ticks % len(SPINNER)]
            extra = f" {_bytes(*self.downloaded)}" if self.downloaded else ""
            self.stream.write(f"\r\x1b[2K{spin} {text}{extra} ({elapsed:.0f}s)")
            self.stream.flush()
        elif text != self.last:
            self.stream.write(f"{text}\n")
            self.stream.flush()
        self.last = text

    def bytes(self, done: int, total: int | None) -> None:
        """Bytes downloaded so far; shown on a terminal, and once (at the end) otherwise."""
        self.downloaded = (done, total)
        if self.tty:
            self.show(None, "downloading")
        elif total is not None and done == total:
            self.stream.write(f"downloaded {_bytes(done, total)}\n")
            self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
