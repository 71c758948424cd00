"""`initialize` from the host's side: what it sends, and the answers it refuses."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from hiagent_host.errors import PROTOCOL_ERROR, HostError
from hiagent_host.rpc import PROTOCOL_VERSION, Handshake, PackageRef, RpcPeer, initialize
from tests.rpc.pipes import ScriptedChild

STEP_S = 5.0
GOOD: dict[str, Any] = {
    "shim_version": "0.1.0",
    "protocol_version": PROTOCOL_VERSION,
    "python_version": "3.11.7",
    "pid": 42,
    "package": {"name": "hiagent-plugin-clock", "version": "0.1.0"},
    "plugins": ["时间工具"],
}


async def handshake_with(answer: dict[str, Any], sent: list[dict[str, Any]]) -> Handshake:
    """Run `initialize` against a child that records the request and answers `answer`."""
    child = ScriptedChild()
    peer = RpcPeer(
        child.host_out, child.host_in, max_frame_bytes=8192, stream_window=16, cancel_grace_s=1.0
    )

    async def respond() -> None:
        request = await child.receive()
        sent.append(request)
        await child.answer(request["id"], answer)

    outcome: list[Handshake | HostError] = []
    try:
        async with peer, anyio.create_task_group() as tg:
            tg.start_soon(respond)
            with anyio.fail_after(STEP_S):
                try:
                    outcome.append(await initialize(peer, timeout_s=STEP_S, thread_pool_size=3))
                except HostError as exc:  # raised outside the task group, not in a group
                    outcome.append(exc)
    finally:
        await child.aclose()
    if isinstance(outcome[0], HostError):
        raise outcome[0]
    return outcome[0]


@pytest.mark.anyio
async def test_initialize_sends_the_peers_limits_and_returns_the_handshake() -> None:
    sent: list[dict[str, Any]] = []
    handshake = await handshake_with(GOOD, sent)
    assert handshake.package == PackageRef(name="hiagent-plugin-clock", version="0.1.0")
    assert handshake.plugins == ["时间工具"]
    params = sent[0]["params"]
    assert sent[0]["method"] == "initialize"
    assert params["protocol_version"] == PROTOCOL_VERSION
    assert (params["max_frame_bytes"], params["stream_window"]) == (8192, 16)
    assert params["thread_pool_size"] == 3
    assert isinstance(params["host_version"], str)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "answer",
    [GOOD | {"protocol_version": PROTOCOL_VERSION + 1}, GOOD | {"pid": "not a pid"}, {}],
    ids=["other-version", "bad-field", "empty"],
)
async def test_a_handshake_in_another_protocol_or_shape_is_a_protocol_error(
    answer: dict[str, Any],
) -> None:
    with pytest.raises(HostError) as caught:
        await handshake_with(answer, [])
    assert (caught.value.code, caught.value.http_status) == (PROTOCOL_ERROR, 502)
