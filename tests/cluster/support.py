"""Helpers for the multi-node tests: a plugin that tells its builds apart, nodes, HTTP calls."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import httpx

from hiagent_host.packages.wheelbuild import build_wheel

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
