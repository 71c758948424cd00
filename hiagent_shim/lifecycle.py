"""How a shim process ends: signals begin a stop, a watchdog guarantees the exit."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Final

from hiagent_shim.report import flush_streams, note

# A loop too wedged to run its own stop sequence (a plugin blocking it) is ended this much later.
EXIT_WATCHDOG_S: Final = 2.0
EXIT_OK: Final = 0
EXIT_WEDGED: Final = 70  # EX_SOFTWARE: the watchdog had to end the process

_watchdog_lock = threading.Lock()
_watchdog_started = False


def start_watchdog() -> None:
    """End the process `EXIT_WATCHDOG_S` from now unless it has exited by then (idempotent)."""
    global _watchdog_started
    with _watchdog_lock:
        if _watchdog_started:
            return
        _watchdog_started = True

    def expire() -> None:
        threading.Event().wait(EXIT_WATCHDOG_S)
        try:
            note(f"the event loop did not stop within {EXIT_WATCHDOG_S} s; exiting")
        finally:
            flush_and_exit(EXIT_WEDGED)  # whatever happened above, the process ends here

    threading.Thread(target=expire, name="hiagent-exit-watchdog", daemon=True).start()


def flush_and_exit(code: int) -> None:
    """Flush what plugins printed, then exit at once (abandoned tool threads are not joined)."""
    try:
        flush_streams()
    finally:
        os._exit(code)


def on_stop_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[str], None]) -> None:
    """SIGTERM and SIGINT call `stop` on `loop` and arm the watchdog.

    A plain signal handler, not `loop.add_signal_handler`: it runs even while a plugin
    blocks the loop in `time.sleep`, so the watchdog still ends the process.
    """

    def handle(signum: int, frame: FrameType | None) -> None:
        start_watchdog()
        loop.call_soon_threadsafe(stop, f"received {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
