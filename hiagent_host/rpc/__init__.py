"""The host's end of the wire to a plugin process: framing, messages, a multiplexing peer.

docs/protocol.md is the contract; `hiagent_shim` implements the other end.
"""

from __future__ import annotations

from hiagent_host.rpc.errors import (
    DeadlineExceeded,
    FrameTooLarge,
    PeerClosed,
    ProtocolViolation,
    ResultTooLarge,
)
from hiagent_host.rpc.handshake import Handshake, PackageRef, initialize
from hiagent_host.rpc.messages import PROTOCOL_VERSION, error_to_host
from hiagent_host.rpc.peer import RpcPeer, StreamCall

__all__ = [
    "PROTOCOL_VERSION",
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
]
