"""Reports on stderr: the shim's own notes, and the tracebacks that never cross the wire."""

from __future__ import annotations

import os
import sys
import traceback


def note(message: str) -> None:
    """One line on stderr, tagged with the shim's pid."""
    print(f"hiagent_shim[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


def failure(context: str, exc: BaseException) -> None:
    """`context`, then the traceback of `exc`, on stderr."""
    note(context)
    traceback.print_exception(exc, file=sys.stderr)
    sys.stderr.flush()
