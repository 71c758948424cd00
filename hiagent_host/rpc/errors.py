"""The errors the host's end of the wire raises itself (the child's errors: `messages`)."""

from __future__ import annotations

from typing import Any

from hiagent_host.errors import (
    FRAME_TOO_LARGE,
    PLUGIN_CRASHED,
    PROTOCOL_ERROR,
    RESULT_TOO_LARGE,
    TOOL_TIMEOUT,
    HostError,
)


class FrameTooLarge(HostError):
    """A request would exceed `max_frame_bytes`; nothing was written."""

    code = FRAME_TOO_LARGE
    http_status = 413


class ResultTooLarge(HostError):
    """The child sent a frame over `max_frame_bytes`; it was discarded unread."""

    code = RESULT_TOO_LARGE
    http_status = 502


class PeerClosed(HostError):
    """The child's end of the wire is gone (EOF on its stdout, or the peer was closed).

    The pool replaces it with an error carrying the exit status and the stderr tail.
    """

    code = PLUGIN_CRASHED
    http_status = 502


class ProtocolViolation(HostError):
    """The child broke the protocol (a malformed answer, a stream over its window)."""

    code = PROTOCOL_ERROR
    http_status = 502


class DeadlineExceeded(HostError):
    """A call outlived its deadline; `$/cancelRequest` was sent.

    `cancel_acknowledged` says whether the child answered within the cancel grace period:
    if it did not, the child is wedged and the pool stops it.
    """

    code = TOOL_TIMEOUT
    http_status = 504

    def __init__(
        self, message: str, *, cancel_acknowledged: bool = False, data: Any = None
    ) -> None:
        super().__init__(message, data=data)
        self.cancel_acknowledged = cancel_acknowledged
