"""Fixtures for the API tests: live servers (real subprocesses on loopback) and installed wheels.

`server` is the session's main server (no API keys, JSON logs). `installed` installs the
fixture plugins the route tests call into it once. `guarded` is a second server on the same
data directories with API keys, a one-process pool, file:// installs limited to one root and
a Redis queue that is not there (for 401, PoolExhausted, Forbidden, QueueUnavailable).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from selenium.webdriver.remote.webdriver import WebDriver
from starlette.applications import Starlette

from hiagent_host.app import create_app
from hiagent_host.config import load_config
from tests.api.browser import chromium
from tests.api.support import (
    INSTALL_TIMEOUT_S,
    REQUEST_TIMEOUT_S,
    LiveServer,
    WheelServer,
    free_port,
    write_config,
)

API_KEY: Final = "test-key-4b1d9c"
# The fixture packages the route tests call (the journey installs clock and calc itself).
PRELOADED: Final = ("echo", "stream", "secret", "multi", "hang", "exit_mid_call")


class Installed(dict[str, dict[str, Any]]):
    """Fixture name → PackageMeta of the installed package."""


@pytest.fixture(scope="session")
def api_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api")


@pytest.fixture(scope="session")
def wheel_dir(api_root: Path, built_wheels: dict[str, Path]) -> Path:
    """Every fixture wheel in one directory (what the loopback HTTP server serves)."""
    directory = api_root / "wheels"
    directory.mkdir()
    for wheel in built_wheels.values():
        shutil.copy2(wheel, directory / wheel.name)
    return directory


@pytest.fixture(scope="session")
def wheels(wheel_dir: Path, built_wheels: dict[str, Path]) -> dict[str, Path]:
    """Fixture name → its wheel in `wheel_dir`."""
    return {name: wheel_dir / path.name for name, path in built_wheels.items()}


@pytest.fixture(scope="session")
def wheel_server(wheel_dir: Path) -> Iterator[WheelServer]:
    server = WheelServer(wheel_dir)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def server(api_root: Path, wheelhouse: Path) -> Iterator[LiveServer]:
    port = free_port()
    config = write_config(api_root / "runtime.toml", api_root / "data", wheelhouse, port)
    live = LiveServer(config, port, api_root / "server.log").start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="session")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S) as http:
        yield http


def install(client: httpx.Client, wheel: Path, *, force: bool = True) -> httpx.Response:
    return client.post(
        "/v1/InstallPackage",
        json={"uri": wheel.as_uri(), "filename": wheel.name, "force": force},
        timeout=INSTALL_TIMEOUT_S,
    )


@contextlib.contextmanager
def own_server(
    root: Path, wheelhouse: Path, wheels: list[Path], **sections: dict[str, Any]
) -> Iterator[LiveServer]:
    """A server on data of its own under `root` (`sections` in its runtime.toml), with
    `wheels` installed: for tests that change what it serves or how it logs."""
    port = free_port()
    config = write_config(root / "runtime.toml", root / "data", wheelhouse, port, **sections)
    live = LiveServer(config, port, root / "server.log").start()
    try:
        with httpx.Client(base_url=live.url, timeout=REQUEST_TIMEOUT_S) as http:
            for wheel in wheels:
                assert install(http, wheel).status_code == 200
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="session")
def installed(client: httpx.Client, wheels: dict[str, Path]) -> Installed:
    """The PRELOADED fixture packages, installed (in parallel) into the main server."""
    # The first install alone: concurrent first installs in a fresh server race in CPython's
    # lazy sysconfig initialisation (uv's find_uv_bin reads it), a bug reported upstream of us.
    first, *rest = PRELOADED
    responses = {first: install(client, wheels[first])}
    with ThreadPoolExecutor(max_workers=3) as executor:
        responses |= dict(
            zip(rest, executor.map(lambda n: install(client, wheels[n]), rest), strict=True)
        )
    out = Installed()
    for name, response in responses.items():
        assert response.status_code == 200, (name, response.text)
        out[name] = response.json()["data"]
    return out


@pytest.fixture(scope="session")
def guarded(
    api_root: Path, wheelhouse: Path, wheel_dir: Path, installed: Installed
) -> Iterator[LiveServer]:
    """A second server on the same data: keys, one process, one file root, no Redis."""
    port = free_port()
    config = write_config(
        api_root / "guarded.toml",
        api_root / "data",
        wheelhouse,
        port,
        auth={"api_keys": [API_KEY]},
        pool={"max_subprocess": 1, "acquire_timeout_s": 0.5, "call_timeout_s": 20.0},
        packages={"allowed_file_roots": [str(wheel_dir)]},
        queue={
            "backend": "redis",
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
            "connect_timeout_s": 0.5,
        },
    )
    live = LiveServer(config, port, api_root / "guarded.log").start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="session")
def guarded_client(guarded: LiveServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=guarded.url, timeout=REQUEST_TIMEOUT_S, headers=headers) as http:
        yield http


@pytest.fixture
def app_config(tmp_path: Path, wheelhouse: Path) -> Path:
    """A runtime.toml for an in-process app on a fresh, empty data directory."""
    return write_config(
        tmp_path / "runtime.toml", tmp_path / "data", wheelhouse, free_port(),
        logging={"json": False},
    )  # fmt: skip


@contextlib.asynccontextmanager
async def running_app(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """`app` with its lifespan entered, and an httpx client that calls it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            yield http


@pytest.fixture
async def app_client(app_config: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(create_app(load_config(app_config))) as http:
        yield http


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Debian chromium in a fresh profile (tests/api/browser.py)."""
    with chromium(tmp_path / "profile") as driver:
        yield driver
