"""`hiagent-host new` and `build`: a scaffolded project builds, passes its test, and serves.

The project is built with the command itself and installed into a real server; both of its
tools (the sync and the async one) are called over HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from hiagent_host.cli_new import icon_png
from tests.api.support import INSTALL_TIMEOUT_S, LiveServer, free_port, write_config
from tests.packages.support import subprocess_env

CLI_TIMEOUT_S = 120


def hiagent_host(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hiagent_host", *args],
        capture_output=True, text=True, env=subprocess_env(), cwd=cwd,
        timeout=CLI_TIMEOUT_S, check=False,
    )  # fmt: skip


def test_a_scaffolded_plugin_builds_passes_its_test_and_serves_both_tools(
    tmp_path: Path, wheelhouse: Path
) -> None:
    created = hiagent_host(tmp_path, "new", "hiagent-plugin-hello")
    assert created.returncode == 0, created.stderr
    project = tmp_path / "hiagent-plugin-hello"
    assert (project / "hiagent_plugin_hello" / "icon.png").read_bytes() == icon_png()

    own_test = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        capture_output=True, text=True, cwd=project, timeout=CLI_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert own_test.returncode == 0, own_test.stdout + own_test.stderr

    built = hiagent_host(tmp_path, "build", "hiagent-plugin-hello", "--json")
    assert built.returncode == 0, built.stderr
    info = json.loads(built.stdout)
    wheel = Path(info["wheel"])
    assert wheel == project / "dist" / "hiagent_plugin_hello-0.1.0-py3-none-any.whl"
    assert (info["name"], info["version"], info["size"]) == (
        "hiagent-plugin-hello", "0.1.0", wheel.stat().st_size,
    )  # fmt: skip
    plain = hiagent_host(project, "build")
    assert plain.stdout.strip() == str(wheel)

    port = free_port()
    config = write_config(tmp_path / "runtime.toml", tmp_path / "data", wheelhouse, port)
    server = LiveServer(config, port, tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=server.url, timeout=INSTALL_TIMEOUT_S) as http:
            meta = http.post(
                "/v1/InstallPackage", json={"uri": wheel.as_uri(), "filename": wheel.name}
            ).json()["data"]
            [plugin] = meta["plugins"]
            assert list(plugin["tools"]) == ["greet", "count_words"]
            assert plugin["icon"].endswith("/hiagent_plugin_hello/icon.png")
            ref = {"pkg": "hiagent-plugin-hello", "version": "0.1.0", "plugin": "hello"}
            greet = http.post("/v1/RunPluginTool", json=ref | {"tool": "greet"})
            assert greet.json() == {"data": "Hello, world!", "error": None}
            count = http.post(
                "/v1/RunPluginTool",
                json=ref | {"tool": "count_words", "input": {"text": "one two three"}},
            )
            assert count.json()["data"] == {"words": 3, "characters": 13}
            icon = http.post("/v1/GetPluginIcon", json=ref).json()["data"]
            assert icon["filename"] == "icon.png"
    finally:
        server.stop()


@pytest.mark.parametrize("name", ["bad-", "has space", "9lives"])
def test_new_refuses_a_name_that_cannot_be_a_distribution_or_package(
    tmp_path: Path, name: str
) -> None:
    done = hiagent_host(tmp_path, "new", name, "--json")
    assert done.returncode == 2
    assert json.loads(done.stderr)["error"]["code"] == "InvalidRequest"
    assert list(tmp_path.iterdir()) == []


def test_new_never_writes_into_a_directory_that_has_files(tmp_path: Path) -> None:
    (tmp_path / "hello").mkdir()
    (tmp_path / "hello" / "keep.txt").write_text("mine")
    done = hiagent_host(tmp_path, "new", "hello")
    assert done.returncode == 2
    assert "already exists" in done.stderr
    assert [p.name for p in (tmp_path / "hello").iterdir()] == ["keep.txt"]


def test_build_of_a_directory_without_a_project_fails_clearly(tmp_path: Path) -> None:
    done = hiagent_host(tmp_path, "build", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.startswith("hiagent-host: InvalidPackage: ")
    assert "pyproject.toml" in done.stderr
