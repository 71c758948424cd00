"""Helpers for the multi-node tests: a plugin that tells its builds apart, nodes, HTTP calls."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import httpx

from hiagent_host.packages.wheelbuild import build_wheel
from tests.api.support import LiveServer, free_port, write_config

PLUGIN: Final = "Timed"
# Each HTTP request of these tests; an install (venv build) or a first call that
# materialises a venv on a loaded machine stays well within it.
REQUEST_TIMEOUT_S: Final = 180.0
# How often a bounded wait asks again.
POLL_S: Final = 0.05

MODULE: Final = '''
import time

from hiagent_plugin_sdk import BasePlugin

BUILD = {build!r}


class TimedPlugin(BasePlugin):
    """Says which build it is, at once or after a while."""

    hiagent_tools = ["build", "slow"]

    def build(self) -> str:
        """Which build of the package this is."""
        return BUILD

    def slow(self, seconds: float = 0.2) -> str:
        """Which build this is, after `seconds`."""
        time.sleep(seconds)
        return BUILD
'''


def timed_plugin(out_dir: Path, name: str, version: str, build: str) -> Path:
    """A real plugin wheel whose tools answer `build`."""
    module = name.replace("-", "_")
    project = out_dir / f"project-{module}-{version}-{build}"
    (project / module).mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "{version}"\n\n'
        f'[project.entry-points."hiagent.plugins"]\n"{PLUGIN}" = "{module}:TimedPlugin"\n',
        encoding="utf-8",
    )
    (project / module / "__init__.py").write_text(MODULE.format(build=build), encoding="utf-8")
    return build_wheel(project, out_dir / f"wheels-{build}")


def post(client: httpx.Client, url: str, route: str, body: dict[str, Any]) -> httpx.Response:
    return client.post(f"{url}/v1/{route}", json=body, timeout=REQUEST_TIMEOUT_S)


def call(
    client: httpx.Client, url: str, name: str, tool: str = "build", **tool_input: Any
) -> httpx.Response:
    body = {"pkg": name, "version": "1.0", "plugin": PLUGIN, "tool": tool, "input": tool_input}
    return post(client, url, "RunPluginTool", body)


def wait_until(check: Callable[[], bool], *, timeout_s: float, what: str) -> float:
    """Ask `check` until it holds (bounded); how long that took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(POLL_S)
    return time.monotonic() - started


class Nodes:
    """API servers a test starts (each its own port and log), all stopped at its end."""

    def __init__(self, root: Path, wheelhouse: Path) -> None:
        self.root = root
        self.wheelhouse = wheelhouse
        self.started: list[LiveServer] = []

    def start(self, name: str, *, data: str | None = None, **sections: Any) -> LiveServer:
        """`hiagent-host serve` with data under `root/<data or name>` and these sections."""
        port = free_port()
        config = write_config(
            self.root / f"{name}.toml", self.root / (data or name), self.wheelhouse, port,
            **sections,
        )  # fmt: skip
        server = LiveServer(config, port, self.root / f"{name}.log")
        self.started.append(server)
        return server.start()

    def stop(self) -> None:
        for server in self.started:
            server.stop()


def redis_queue(url: str) -> dict[str, Any]:
    """A `[queue]` on Redis under a queue name of its own, with an in-process worker."""
    return {
        "backend": "redis",
        "redis_url": url,
        "queue_name": f"hiagent:test:{secrets.token_hex(4)}",
        "with_worker": True,
    }
