"""Reports on stderr: the shim's own notes, and the tracebacks that never cross the wire.

Every write here swallows OSError and ValueError: stderr is for people, and a host that died
(a broken pipe) or a closed stream must never keep the shim from answering or exiting.
"""

from __future__ import annotations

import os
import sys
import traceback


def note(message: str) -> None:
    """One line on stderr, tagged with the shim's pid (dropped if stderr is unusable)."""
    say(f"hiagent_shim[{os.getpid()}]: {message}")


def failure(context: str, exc: BaseException) -> None:
    """`context`, then the traceback of `exc`, on stderr (dropped if stderr is unusable)."""
    try:
        text = "".join(traceback.format_exception(exc))
    except Exception as error:  # noqa: BLE001 - a plugin's exception may break formatting
        text = f"<the traceback of a {type(exc).__name__} could not be formatted: {error!r}>\n"
    say(f"hiagent_shim[{os.getpid()}]: {context}\n" + text)


def flush_streams() -> None:
    """Flush what plugins printed on stdout and stderr, ignoring streams that are unusable."""
    for stream in (sys.stdout, sys.__stdout__, sys.stderr, sys.__stderr__):
        if stream is None:
            continue
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # nothing more can be said on a broken or closed stream


def say(text: str) -> None:
    """`text` and a newline on stderr, as is (dropped if stderr is unusable)."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        stream.write(text if text.endswith("\n") else text + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass  # a broken pipe (the host is gone) or a closed stream: nobody is left to read it
