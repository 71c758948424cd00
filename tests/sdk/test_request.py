"""arequest / assrf_request against real HTTP servers on loopback (needs the `http` extra)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hiagent_plugin_sdk import arequest, assrf_request

web = pytest.importorskip("aiohttp.web", reason="the SDK's `http` extra (aiohttp) is not installed")


async def serve(handler: Any) -> tuple[Any, str]:
    """Start an aiohttp app answering every path with `handler`; return (runner, base URL)."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def echo_server() -> AsyncIterator[str]:
    async def echo(request: Any) -> Any:
        body = await request.json() if request.can_read_body else None
        return web.json_response(
            {"method": request.method, "query": dict(request.query), "body": body}
        )

    runner, url = await serve(echo)
    yield url
    await runner.cleanup()


@pytest.mark.anyio
async def test_arequest_sends_json_and_params(plugin_env: Path, echo_server: str) -> None:
    async with arequest(
        "POST", f"{echo_server}/x", json={"a": 1}, params={"q": "v"}, timeout_sec=10
    ) as resp:
        assert resp.status == 200
        assert await resp.json() == {"method": "POST", "query": {"q": "v"}, "body": {"a": 1}}


@pytest.mark.anyio
async def test_assrf_request_goes_through_the_configured_proxy(
    plugin_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    async def proxy(request: Any) -> Any:
        seen.append(str(request.url))
        return web.json_response({"via": "proxy"})

    runner, proxy_url = await serve(proxy)
    try:
        monkeypatch.setenv("HIAGENT_PLUGIN_CONFIG", f'{{"ssrf_proxy": "{proxy_url}"}}')
        target = "http://unreachable.invalid/secret"
        async with assrf_request("GET", target, timeout_sec=10) as resp:
            assert await resp.json() == {"via": "proxy"}
    finally:
        await runner.cleanup()
    assert seen == [target]
