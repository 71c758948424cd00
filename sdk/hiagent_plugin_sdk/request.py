"""Outbound HTTP for plugins: `arequest`, `assrf_request` and the SSRF proxy environment.

aiohttp is imported on first use only (install `hiagent-plugin-sdk[http]`), so plugins that
never make requests this way neither need it nor pay for importing it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

from hiagent_plugin_sdk.errors import MissingDependency
from hiagent_plugin_sdk.extensions import load

if TYPE_CHECKING:
    from aiohttp import ClientResponse  # type: ignore[import-not-found, unused-ignore]

INSTALL_HINT: Final = "install 'hiagent-plugin-sdk[http]' (or aiohttp>=3.9) into the plugin's env"


@asynccontextmanager
async def arequest(
    method: str,
    url: str,
    headers: Any = None,
    json: Any = None,
    params: Any = None,
    data: Any = None,
    timeout_sec: float | None = None,
) -> AsyncIterator[ClientResponse]:
    """A response from a fresh session that honours the proxy environment variables."""
    async with _request(method, url, headers, json, params, data, timeout_sec, None) as resp:
        yield resp


@asynccontextmanager
async def assrf_request(
    method: str,
    url: str,
    headers: Any = None,
    json: Any = None,
    params: Any = None,
    data: Any = None,
    timeout_sec: float | None = None,
) -> AsyncIterator[ClientResponse]:
    """Like `arequest`, but sent through the configured SSRF proxy (`NO_PROXY` does not apply).

    With no SSRF proxy configured the request goes out as `arequest` would send it.
    """
    proxy = load().ssrf_proxy
    if url.lower().startswith("https:"):
        chosen = proxy.https_proxy or proxy.http_proxy
    else:
        chosen = proxy.http_proxy or proxy.https_proxy
    async with _request(
        method, url, headers, json, params, data, timeout_sec, chosen or None
    ) as resp:
        yield resp


@functools.cache
def setup_ssrf_proxy_env() -> None:
    """Point HTTP(S)_PROXY / NO_PROXY (both spellings) at the configured SSRF proxy, once."""
    proxy = load().ssrf_proxy
    for name, value in (
        ("HTTP_PROXY", proxy.http_proxy),
        ("HTTPS_PROXY", proxy.https_proxy),
        ("NO_PROXY", proxy.no_proxy),
    ):
        if value:
            os.environ[name] = value
            os.environ[name.lower()] = value


@asynccontextmanager
async def _request(
    method: str,
    url: str,
    headers: Any,
    json: Any,
    params: Any,
    data: Any,
    timeout_sec: float | None,
    proxy: str | None,
) -> AsyncIterator[ClientResponse]:
    aiohttp = _aiohttp()
    timeout = aiohttp.ClientTimeout(total=timeout_sec)
    async with (
        aiohttp.ClientSession(trust_env=True, timeout=timeout) as session,
        session.request(
            method, url, headers=headers, json=json, params=params, data=data, proxy=proxy
        ) as resp,
    ):
        yield resp


def _aiohttp() -> ModuleType:
    try:
        import aiohttp  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        raise MissingDependency(f"arequest/assrf_request need aiohttp: {INSTALL_HINT}") from exc
    return aiohttp  # type: ignore[no-any-return, unused-ignore]
