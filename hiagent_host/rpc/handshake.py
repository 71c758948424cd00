"""`initialize`: the first call on every child, which checks that both ends speak one protocol."""

from __future__ import annotations

from typing import Any

import msgspec

from hiagent_host import __version__
from hiagent_host.errors import PROTOCOL_ERROR, HostError
from hiagent_host.rpc.messages import INITIALIZE, PROTOCOL_VERSION
from hiagent_host.rpc.peer import RpcPeer


class PackageRef(msgspec.Struct, frozen=True):
    """The distribution a child serves, as its METADATA spells it."""

    name: str
    version: str


class Handshake(msgspec.Struct, frozen=True):
    """What a child says about itself in answer to `initialize`."""

    shim_version: str
    protocol_version: int
    python_version: str
    pid: int
    package: PackageRef
    plugins: list[str]


async def initialize(
    peer: RpcPeer,
    *,
    timeout_s: float,
    thread_pool_size: int | None = None,
    host_version: str = __version__,
) -> Handshake:
    """Send `initialize` with the peer's frame limit and stream window; check the answer.

    The child imports its plugins here: a plugin that fails to import raises a HostError
    with code `PluginImportFailed` whose data names the plugin.
    """
    params: dict[str, Any] = {
        "host_version": host_version,
        "protocol_version": PROTOCOL_VERSION,
        "max_frame_bytes": peer.max_frame_bytes,
        "stream_window": peer.stream_window,
    }
    if thread_pool_size is not None:
        params["thread_pool_size"] = thread_pool_size
    raw = await peer.call(INITIALIZE, params, timeout_s=timeout_s)
    try:
        handshake = msgspec.convert(raw, Handshake)
    except msgspec.ValidationError as exc:
        raise HostError(
            f"the plugin process answered initialize with an invalid handshake: {exc}",
            code=PROTOCOL_ERROR,
            http_status=502,
        ) from exc
    if handshake.protocol_version != PROTOCOL_VERSION:
        raise HostError(
            f"the plugin process speaks protocol {handshake.protocol_version}, "
            f"the host {PROTOCOL_VERSION}",
            code=PROTOCOL_ERROR,
            http_status=502,
            data={"expected": PROTOCOL_VERSION, "got": handshake.protocol_version},
        )
    return handshake
