"""The host's end of the wire to a plugin process: framing, messages, a multiplexing peer.

docs/protocol.md is the contract; `hiagent_shim` implements the other end.
"""

from __future__ import annotations

from hiagent_host.rpc.busypoll import MIN_CPUS, BusyPoll, running_busy_poll, usable_cpus
from hiagent_host.rpc.errors import (
    DeadlineExceeded,
    FrameTooLarge,
    PeerClosed,
    ProtocolViolation,
    ResultTooLarge,
)
from hiagent_host.rpc.handshake import Handshake, PackageRef, initialize
from hiagent_host.rpc.messages import (
    METADATA,
    PROTOCOL_VERSION,
    RUN_TOOL,
    SHUTDOWN,
    VALIDATE,
    error_to_host,
)
from hiagent_host.rpc.peer import RpcPeer, StreamCall

__all__ = [
    "METADATA",
    "MIN_CPUS",
    "PROTOCOL_VERSION",
    "RUN_TOOL",
    "SHUTDOWN",
    "VALIDATE",
    "BusyPoll",
    "DeadlineExceeded",
    "FrameTooLarge",
    "Handshake",
    "PackageRef",
    "PeerClosed",
    "ProtocolViolation",
    "ResultTooLarge",
    "RpcPeer",
    "StreamCall",
    "error_to_host",
    "initialize",
    "running_busy_poll",
    "usable_cpus",
]
