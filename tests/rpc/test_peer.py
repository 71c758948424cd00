"""RpcPeer against a scripted child: multiplexing, deadlines, cancellation, EOF, frame limits."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from hiagent_host.errors import (
    CANCELLED,
    FRAME_TOO_LARGE,
    PLUGIN_CRASHED,
    PROTOCOL_ERROR,
    RESULT_TOO_LARGE,
    TOOL_TIMEOUT,
    HostError,
)
from hiagent_host.rpc import DeadlineExceeded, RpcPeer
from hiagent_host.rpc.messages import (
    APPLICATION_ERROR,
    METHOD_NOT_FOUND,
    REQUEST_CANCELLED,
    ErrorObject,
    error_to_host,
)
from tests.rpc.pipes import ScriptedChild

# Bounds for waits that should end at once; a failure is a hang, not a slow machine.
STEP_S = 5.0
# Deadlines the tests let expire on purpose: short, the test waits for nothing else.
SHORT_S = 0.05


@asynccontextmanager
async def connected(
    *, max_frame_bytes: int = 4096, stream_window: int = 4, cancel_grace_s: float = STEP_S
) -> AsyncIterator[tuple[RpcPeer, ScriptedChild]]:
    child = ScriptedChild()
    peer = RpcPeer(
        child.host_out,
        child.host_in,
        max_frame_bytes=max_frame_bytes,
        stream_window=stream_window,
        cancel_grace_s=cancel_grace_s,
    )
    try:
        async with peer:
            with anyio.fail_after(STEP_S):
                yield peer, child
    finally:
        await child.aclose()


@pytest.mark.anyio
async def test_concurrent_calls_each_get_their_own_answer_in_any_order() -> None:
    results: dict[str, Any] = {}
    async with connected() as (peer, child):

        async def call(name: str) -> None:
            results[name] = await peer.call("echo", {"name": name}, timeout_s=STEP_S)

        async with anyio.create_task_group() as tg:
            for name in ("a", "b", "c"):
                tg.start_soon(call, name)
            requests = [await child.receive() for _ in range(3)]
            assert peer.pending_count == 3
            for request in reversed(requests):
                await child.answer(request["id"], request["params"]["name"].upper())
    assert results == {"a": "A", "b": "B", "c": "C"}
    assert peer.pending_count == 0


@pytest.mark.anyio
async def test_requests_carry_increasing_integer_ids_and_jsonrpc_2() -> None:
    async with connected() as (peer, child), anyio.create_task_group() as tg:
        tg.start_soon(peer.notify, "$/hello", {"x": 1})
        assert await child.receive() == {"jsonrpc": "2.0", "method": "$/hello", "params": {"x": 1}}
        for expected_id in (1, 2):
            tg.start_soon(functools.partial(peer.call, "ping", timeout_s=STEP_S))
            request = await child.receive()
            assert request == {"jsonrpc": "2.0", "id": expected_id, "method": "ping", "params": {}}
            await child.answer(expected_id, "pong")


@pytest.mark.anyio
async def test_a_child_error_is_raised_with_its_code_status_and_data() -> None:
    async with connected() as (peer, child), anyio.create_task_group() as tg:

        async def answer() -> None:
            request = await child.receive()
            data = {"code": "ToolNotFound", "http_code": 404, "data": {"tool": "x"}}
            await child.fail(request["id"], APPLICATION_ERROR, "no tool x", data)

        tg.start_soon(answer)
        with pytest.raises(HostError) as caught:
            await peer.call("run_tool", {"tool": "x"}, timeout_s=STEP_S)
    assert (caught.value.code, caught.value.http_status) == ("ToolNotFound", 404)
    assert caught.value.data == {"tool": "x"}
    assert caught.value.message == "no tool x"


@pytest.mark.anyio
async def test_a_deadline_sends_cancel_and_reports_the_childs_acknowledgement() -> None:
    async with connected() as (peer, child), anyio.create_task_group() as tg:

        async def acknowledge() -> None:
            request = await child.receive()
            cancel = await child.receive()
            assert cancel["method"] == "$/cancelRequest"
            assert cancel["params"] == {"id": request["id"]}
            data = {"code": "Cancelled", "http_code": 499, "data": None}
            await child.fail(request["id"], REQUEST_CANCELLED, "cancelled", data)

        tg.start_soon(acknowledge)
        with pytest.raises(DeadlineExceeded) as caught:
            await peer.call("run_tool", {}, timeout_s=SHORT_S)
    assert caught.value.code == TOOL_TIMEOUT
    assert caught.value.http_status == 504
    assert caught.value.cancel_acknowledged is True
    assert peer.pending_count == 0


@pytest.mark.anyio
async def test_a_late_result_after_the_cancel_still_counts_as_acknowledged() -> None:
    async with connected() as (peer, child), anyio.create_task_group() as tg:

        async def late() -> None:
            request = await child.receive()
            await child.receive()  # the cancel
            await child.answer(request["id"], "too late")

        tg.start_soon(late)
        with pytest.raises(DeadlineExceeded) as caught:
            await peer.call("run_tool", {}, timeout_s=SHORT_S)
    assert caught.value.cancel_acknowledged is True


@pytest.mark.anyio
async def test_a_deadline_without_acknowledgement_says_so_after_the_grace_period() -> None:
    async with connected(cancel_grace_s=SHORT_S) as (peer, child), anyio.create_task_group() as tg:

        async def ignore() -> None:
            await child.receive()
            assert (await child.receive())["method"] == "$/cancelRequest"

        tg.start_soon(ignore)
        with pytest.raises(DeadlineExceeded) as caught:
            await peer.call("run_tool", {}, timeout_s=SHORT_S)
        assert caught.value.cancel_acknowledged is False
        assert caught.value.data == {"timeout_s": SHORT_S, "cancel_acknowledged": False}

        # A late answer to the abandoned call is dropped; the peer keeps serving.
        await child.answer(1, "late")
        tg.start_soon(child_answers_pong, child)
        assert await peer.call("ping", timeout_s=STEP_S) == "pong"


@pytest.mark.anyio
async def test_a_short_deadline_expires_on_time_behind_a_call_with_a_longer_one() -> None:
    async with connected() as (peer, child), anyio.create_task_group() as tg:
        long_result: list[Any] = []

        async def long_call() -> None:
            long_result.append(await peer.call("run_tool", {"n": 1}, timeout_s=STEP_S * 10))

        tg.start_soon(long_call)
        first = await child.receive()
        tg.start_soon(acknowledge_cancels, child, 1)
        started = anyio.current_time()
        with pytest.raises(DeadlineExceeded) as caught:
            await peer.call("run_tool", {"n": 2}, timeout_s=SHORT_S)
        elapsed = anyio.current_time() - started
        await child.answer(first["id"], "long one")
    assert caught.value.cancel_acknowledged is True
    assert SHORT_S <= elapsed < STEP_S / 2  # its own deadline, not the long call's
    assert long_result == ["long one"]


@pytest.mark.anyio
async def test_calls_with_one_timeout_expire_each_at_its_own_deadline_never_early() -> None:
    timeout_s = 0.2
    async with connected() as (peer, child), anyio.create_task_group() as tg:
        tg.start_soon(child_answers_pong, child)
        assert await peer.call("ping", timeout_s=timeout_s) == "pong"  # armed the timer, left
        await anyio.sleep(timeout_s / 2)  # the next call's deadline is after that timer
        tg.start_soon(acknowledge_cancels, child, 1)
        started = anyio.current_time()
        with pytest.raises(DeadlineExceeded):
            await peer.call("run_tool", {}, timeout_s=timeout_s)
        elapsed = anyio.current_time() - started
    assert timeout_s <= elapsed < STEP_S / 2


async def acknowledge_cancels(child: ScriptedChild, calls: int) -> None:
    """Take `calls` requests; answer each one's `$/cancelRequest` with `Cancelled`."""
    for _ in range(calls):
        request = await child.receive()
        if request.get("method") != "$/cancelRequest":
            request = await child.receive()
        data = {"code": "Cancelled", "http_code": 499, "data": None}
        await child.fail(request["params"]["id"], REQUEST_CANCELLED, "cancelled", data)


async def child_answers_pong(child: ScriptedChild) -> None:
    request = await child.receive()
    await child.answer(request["id"], "pong")


@pytest.mark.anyio
async def test_a_caller_cancelled_by_its_scope_sends_cancel_to_the_child() -> None:
    async with connected() as (peer, child), anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def caller() -> None:
            with scope:
                await peer.call("run_tool", {}, timeout_s=None)

        tg.start_soon(caller)
        request = await child.receive()
        scope.cancel()
        cancel = await child.receive()
        assert cancel == {
            "jsonrpc": "2.0",
            "method": "$/cancelRequest",
            "params": {"id": request["id"]},
        }
    assert peer.pending_count == 0


@pytest.mark.anyio
async def test_eof_fails_every_pending_call_at_once() -> None:
    errors: list[HostError] = []
    async with connected() as (peer, child):

        async def call() -> None:
            try:
                await peer.call("run_tool", {}, timeout_s=None)
            except HostError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            tg.start_soon(call)
            await child.receive()
            await child.receive()
            await child.close()
        await peer.closed.wait()
        with pytest.raises(HostError) as after:
            await peer.call("ping", timeout_s=STEP_S)
    assert [e.code for e in errors] == [PLUGIN_CRASHED, PLUGIN_CRASHED]
    assert after.value.code == PLUGIN_CRASHED
    assert errors[0] is not errors[1]


@pytest.mark.anyio
async def test_fail_all_fails_pending_calls_with_the_given_error() -> None:
    async with connected() as (peer, child), anyio.create_task_group() as tg:
        crashed = HostError("exit status 3", code=PLUGIN_CRASHED, http_status=502, data={"rc": 3})

        async def fail_when_sent() -> None:
            await child.receive()
            peer.fail_all(crashed)

        tg.start_soon(fail_when_sent)
        with pytest.raises(HostError) as caught:
            await peer.call("run_tool", {}, timeout_s=None)
        assert caught.value.data == {"rc": 3}
        assert peer.closed.is_set()
        assert peer.close_error is crashed


@pytest.mark.anyio
async def test_an_oversize_request_is_refused_locally_and_nothing_is_written() -> None:
    async with connected(max_frame_bytes=1024) as (peer, child), anyio.create_task_group() as tg:
        with pytest.raises(HostError) as caught:
            await peer.call("run_tool", {"input": "x" * 2000}, timeout_s=STEP_S)
        assert caught.value.code == FRAME_TOO_LARGE
        assert peer.pending_count == 0
        tg.start_soon(child_answers_pong, child)
        assert await peer.call("ping", timeout_s=STEP_S) == "pong"


@pytest.mark.anyio
async def test_an_oversize_answer_fails_its_call_with_result_too_large() -> None:
    async with connected(max_frame_bytes=1024) as (peer, child), anyio.create_task_group() as tg:

        async def huge() -> None:
            request = await child.receive()
            await child.answer(request["id"], "x" * 5000)

        tg.start_soon(huge)
        with pytest.raises(HostError) as caught:
            await peer.call("run_tool", {}, timeout_s=STEP_S)
        assert caught.value.code == RESULT_TOO_LARGE
        assert caught.value.data["limit"] == 1024
        tg.start_soon(child_answers_pong, child)
        assert await peer.call("ping", timeout_s=STEP_S) == "pong"


@pytest.mark.anyio
async def test_malformed_frames_are_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hiagent_host.rpc")
    async with connected() as (peer, child), anyio.create_task_group() as tg:

        async def garbage_then_answer() -> None:
            request = await child.receive()
            await child.send_raw(b"this is not json\n")
            await child.send_raw(b'{"jsonrpc":"2.0","id":"text","result":1}\n')
            await child.send_raw(b"[1,2]\n")
            await child.answer(request["id"], "fine")

        tg.start_soon(garbage_then_answer)
        assert await peer.call("ping", timeout_s=STEP_S) == "fine"
    assert sum("malformed frame" in r.getMessage() for r in caplog.records) == 3


@pytest.mark.anyio
async def test_an_answer_without_result_or_error_is_a_protocol_error() -> None:
    async with connected() as (peer, child), anyio.create_task_group() as tg:

        async def empty() -> None:
            request = await child.receive()
            await child.send({"id": request["id"]})

        tg.start_soon(empty)
        with pytest.raises(HostError) as caught:
            await peer.call("ping", timeout_s=STEP_S)
    assert caught.value.code == PROTOCOL_ERROR


ABANDONED = {"code": "Cancelled", "http_code": 499, "data": {"abandoned_thread": True}}


@pytest.mark.anyio
async def test_cancel_answers_that_abandon_a_thread_are_counted_even_after_the_caller_left() -> (
    None
):
    async with connected() as (peer, child), anyio.create_task_group() as tg:

        async def abandon() -> None:
            request = await child.receive()
            assert (await child.receive())["method"] == "$/cancelRequest"
            await child.fail(request["id"], REQUEST_CANCELLED, "cancelled", ABANDONED)

        tg.start_soon(abandon)
        with pytest.raises(DeadlineExceeded) as caught:
            await peer.call("run_tool", {}, timeout_s=SHORT_S)
        assert caught.value.cancel_acknowledged is True
        assert peer.abandoned_threads == 1

        scope = anyio.CancelScope()

        async def caller() -> None:
            with scope:
                await peer.call("run_tool", {}, timeout_s=None)

        tg.start_soon(caller)
        request = await child.receive()
        scope.cancel()
        assert (await child.receive())["method"] == "$/cancelRequest"
        await child.fail(request["id"], REQUEST_CANCELLED, "cancelled", ABANDONED)  # nobody waits
        tg.start_soon(child_answers_pong, child)
        assert await peer.call("ping", timeout_s=STEP_S) == "pong"  # read after that answer
        assert peer.abandoned_threads == 2


def test_a_cancelled_answer_keeps_its_details() -> None:
    error = error_to_host(ErrorObject(code=REQUEST_CANCELLED, message="x", data=ABANDONED))
    assert (error.code, error.data) == (CANCELLED, {"abandoned_thread": True})


# -- streams ---------------------------------------------------------------------------------


async def collect(
    peer: RpcPeer, seen: list[Any], *, timeout_s: float, ping_first: bool = False
) -> Any:
    """Run a stream to its end, appending items to `seen`; return its result."""
    async with peer.stream("run_tool", {}, timeout_s=timeout_s) as items:
        if ping_first:
            assert await peer.call("ping", timeout_s=STEP_S) == "pong"
        async for item in items:
            seen.append(item)
    return items.result


@pytest.mark.anyio
async def test_a_stream_yields_items_acks_them_and_ends_with_the_result() -> None:
    seen: list[Any] = []
    acks: list[dict[str, Any]] = []
    async with connected(stream_window=4) as (peer, child), anyio.create_task_group() as tg:

        async def produce() -> None:
            request = await child.receive()
            call_id = request["id"]
            for seq in range(4):
                await child.item(call_id, seq, {"n": seq})
            acks.append(await child.receive())  # window // 2 = 2 items consumed
            acks.append(await child.receive())
            await child.answer(call_id, {"items": 4})

        tg.start_soon(produce)
        async with peer.stream("run_tool", {"stream": True}, timeout_s=STEP_S) as items:
            seen = [item async for item in items]
        assert items.result == {"items": 4}
    assert seen == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}]
    assert [a["method"] for a in acks] == ["$/streamAck", "$/streamAck"]
    assert [a["params"]["seq"] for a in acks] == [1, 3]


@pytest.mark.anyio
async def test_a_stream_error_midway_is_raised_after_the_items_sent_before_it() -> None:
    seen: list[Any] = []
    async with connected() as (peer, child), anyio.create_task_group() as tg:

        async def produce() -> None:
            request = await child.receive()
            await child.item(request["id"], 0, "first")
            data = {"code": "StreamBroke", "http_code": 502, "data": None}
            await child.fail(request["id"], APPLICATION_ERROR, "broke", data)

        tg.start_soon(produce)
        with pytest.raises(HostError) as caught:
            await collect(peer, seen, timeout_s=STEP_S)
    assert seen == ["first"]
    assert caught.value.code == "StreamBroke"


@pytest.mark.anyio
async def test_leaving_a_stream_early_cancels_it_in_the_child() -> None:
    async with connected() as (peer, child), anyio.create_task_group() as tg:
        async with peer.stream("run_tool", {}, timeout_s=STEP_S) as items:
            request = await child.receive()
            await child.item(request["id"], 0, "only")
            async for _ in items:
                break
        cancel = await child.receive()
        assert cancel["method"] == "$/cancelRequest"
        assert cancel["params"] == {"id": request["id"]}
        assert peer.pending_count == 0
        # Items still in flight for the abandoned stream are dropped.
        await child.item(request["id"], 1, "late")
        tg.start_soon(child_answers_pong, child)
        assert await peer.call("ping", timeout_s=STEP_S) == "pong"


@pytest.mark.anyio
async def test_a_stream_past_its_deadline_raises_tool_timeout() -> None:
    async with connected(cancel_grace_s=SHORT_S) as (peer, child), anyio.create_task_group() as tg:
        tg.start_soon(child.receive)
        with pytest.raises(DeadlineExceeded) as caught:
            await collect(peer, [], timeout_s=SHORT_S)
        assert caught.value.cancel_acknowledged is False


@pytest.mark.anyio
async def test_a_child_overrunning_the_stream_window_breaks_only_that_stream() -> None:
    seen: list[Any] = []
    async with connected(stream_window=2) as (peer, child), anyio.create_task_group() as tg:

        async def overrun() -> None:
            stream_request, ping_request = await child.receive(), await child.receive()
            for seq in range(3):
                await child.item(stream_request["id"], seq, seq)
            await child.answer(ping_request["id"], "pong")  # read after all three items

        tg.start_soon(overrun)
        with pytest.raises(HostError) as caught:
            await collect(peer, seen, timeout_s=STEP_S, ping_first=True)
        assert caught.value.code == PROTOCOL_ERROR
        assert seen == [0, 1]
        message = await child.receive()
        while message["method"] == "$/streamAck":  # acks for the two items consumed
            message = await child.receive()
        assert message["method"] == "$/cancelRequest"  # the host stops the stream it gave up on


# -- error mapping ---------------------------------------------------------------------------


def test_application_errors_keep_the_childs_code_status_and_details() -> None:
    data = {"code": "InvalidToolInput", "http_code": 422, "data": {"errors": []}}
    error = error_to_host(ErrorObject(code=APPLICATION_ERROR, message="bad", data=data))
    assert (error.code, error.http_status, error.data) == ("InvalidToolInput", 422, {"errors": []})


def test_a_cancelled_call_maps_to_cancelled_499() -> None:
    data = {"code": "Cancelled", "http_code": 499, "data": None}
    error = error_to_host(ErrorObject(code=REQUEST_CANCELLED, message="x", data=data))
    assert (error.code, error.http_status) == (CANCELLED, 499)


def test_protocol_faults_map_to_protocol_error_with_the_rpc_code() -> None:
    data = {"code": "ProtocolError", "http_code": 502, "data": None}
    error = error_to_host(ErrorObject(code=METHOD_NOT_FOUND, message="no method", data=data))
    assert (error.code, error.http_status) == (PROTOCOL_ERROR, 502)
    assert error.data == {"rpc_code": METHOD_NOT_FOUND, "detail": None}


def test_an_application_error_without_the_data_envelope_is_a_protocol_error() -> None:
    error = error_to_host(ErrorObject(code=APPLICATION_ERROR, message="odd", data="text"))
    assert error.code == PROTOCOL_ERROR
