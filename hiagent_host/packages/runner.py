"""Run one installer or probe subprocess under watch: output tail, timeouts, cancellation.

The child starts in its own session (so the whole tree it spawns can be killed as one process
group) with the environment it is given and stdin closed (or, for a child started ahead of
its input, a pipe that `send` writes once and closes). Its output is read as it comes;
no output for `idle_timeout_s`, a run longer than `timeout_s`, or `cancel` being set kills
the group with SIGKILL. The result is a typed outcome, never an exception: the caller maps
it to the error that fits its phase.
"""

from __future__ import annotations

import contextlib
import enum
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from hiagent_host.packages.sandbox import opened

# How often a wait for output also looks at the cancel event.
CANCEL_POLL_S: Final = 0.1
# Reaping a killed group, or a child that closed its pipes, takes no longer than this.
REAP_TIMEOUT_S: Final = 10.0
# Bytes of output kept for error reports (the last ones; the first ones are rarely the cause).
TAIL_BYTES: Final = 16 * 1024
READ_BYTES: Final = 64 * 1024


class RunOutcome(enum.StrEnum):
    EXITED = "exited"
    IDLE_TIMEOUT = "idle timeout"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    OUTPUT_TOO_LARGE = "output too large"


@dataclass(frozen=True)
class Completed:
    """How a watched child ended, with its stdout (if captured) and its output tail."""

    outcome: RunOutcome
    returncode: int | None
    stdout: bytes
    tail: str

    @property
    def ok(self) -> bool:
        return self.outcome is RunOutcome.EXITED and self.returncode == 0


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout_s: float,
    idle_timeout_s: float | None = None,
    cancel: threading.Event | None = None,
    capture_stdout: bool = False,
    max_stdout_bytes: int = 64 * 1024 * 1024,
) -> Completed:
    """Run `argv` to completion or until a limit; `capture_stdout` keeps stdout apart."""
    child = start(
        argv, env=env, cwd=cwd, capture_stdout=capture_stdout, max_stdout_bytes=max_stdout_bytes
    )
    return child.finish(timeout_s, idle_timeout_s, cancel)


def start(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str],
    cwd: Path,
    capture_stdout: bool = False,
    max_stdout_bytes: int = 64 * 1024 * 1024,
    stdin_pipe: bool = False,
) -> Watched:
    """Start `argv` now and follow it later; `stdin_pipe` keeps its stdin open for `send`."""
    with opened([os.fspath(a) for a in argv]) as (final, fds):  # a jail's files, if any
        proc = subprocess.Popen(
            final,
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if capture_stdout else subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            pass_fds=fds,
        )
    return Watched(proc, capture_stdout, max_stdout_bytes)


class Watched:
    """A started child: `send` it its input, then `finish` following its output, or `abandon`.

    The limits of `finish` count from the start, or from `send`: a child that waited for its
    input is not late for it.
    """

    def __init__(self, proc: subprocess.Popen[bytes], capture: bool, max_stdout: int) -> None:
        self.proc = proc
        self.started = time.monotonic()
        self._watch = _Watch(proc, capture, max_stdout)
        self._finished = False

    def send(self, data: bytes) -> bool:
        """Write `data` to its stdin and close it; False if it is gone already."""
        stdin = self.proc.stdin
        if stdin is None:
            return False
        self.started = time.monotonic()
        try:
            with stdin:
                stdin.write(data)
        except (BrokenPipeError, ValueError):
            return False
        return True

    def finish(
        self,
        timeout_s: float,
        idle_timeout_s: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Completed:
        """Follow it to completion or until a limit; whatever it leaves is killed."""
        proc, watch = self.proc, self._watch
        self._finished = True
        try:
            outcome = watch.follow(self.started, timeout_s, idle_timeout_s, cancel)
        except BaseException:
            _kill_and_reap(proc)
            raise
        finally:
            watch.close()
        if outcome is not RunOutcome.EXITED:
            _kill_group(proc)
        try:
            returncode = proc.wait(timeout=REAP_TIMEOUT_S)
        except subprocess.TimeoutExpired:  # it closed its pipes but keeps running
            _kill_group(proc)
            returncode = proc.wait()
        _kill_group(proc)  # anything it left behind in its group
        return Completed(outcome, returncode, bytes(watch.stdout), watch.tail_text())

    def abandon(self) -> None:
        """Kill its group and reap it, without reading what it said; nothing after `finish`."""
        if self._finished:
            return
        self._finished = True
        _kill_and_reap(self.proc)
        self._watch.close()
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()


class _Watch:
    def __init__(self, proc: subprocess.Popen[bytes], capture: bool, max_stdout: int) -> None:
        self.proc = proc
        self.capture = capture
        self.max_stdout = max_stdout
        self.stdout = bytearray()
        self.tail = bytearray()
        self.selector = selectors.DefaultSelector()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                self.selector.register(stream, selectors.EVENT_READ)

    def follow(
        self,
        start: float,
        timeout_s: float,
        idle_timeout_s: float | None,
        cancel: threading.Event | None,
    ) -> RunOutcome:
        last_output = time.monotonic()
        while self.selector.get_map():
            now = time.monotonic()
            if cancel is not None and cancel.is_set():
                return RunOutcome.CANCELLED
            if now - start > timeout_s:
                return RunOutcome.TIMEOUT
            if idle_timeout_s is not None and now - last_output > idle_timeout_s:
                return RunOutcome.IDLE_TIMEOUT
            exited = self.proc.poll() is not None
            if self._read_ready(0 if exited else CANCEL_POLL_S):
                last_output = time.monotonic()
            elif exited:
                break  # exited, and whatever it left behind holds the pipes open silently
            if len(self.stdout) > self.max_stdout:
                return RunOutcome.OUTPUT_TOO_LARGE
        return RunOutcome.EXITED

    def _read_ready(self, timeout_s: float) -> bool:
        """Read what the pipes have within `timeout_s`; whether anything (or EOF) came."""
        events = self.selector.select(timeout_s)
        for key, _ in events:
            data = os.read(key.fd, READ_BYTES)
            if not data:
                self.selector.unregister(key.fileobj)
            elif self.capture and key.fileobj is self.proc.stdout:
                self.stdout += data
            else:
                self.tail += data
                del self.tail[:-TAIL_BYTES]
        return bool(events)

    def tail_text(self) -> str:
        return self.tail.decode("utf-8", "replace")

    def close(self) -> None:
        """Idempotent: `abandon` may follow `finish`."""
        self.selector.close()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _kill_and_reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill its group and wait (bounded) for it to be reaped."""
    _kill_group(proc)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=REAP_TIMEOUT_S)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's whole process group (it leads its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
