"""`python -m hiagent_shim --describe`: one JSON document on stdout, for the install probe."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.shim.support import STEP_S, shim_env


def describe(python: Path, package: str, data_dir: Path) -> tuple[int, Any, str]:
    done = subprocess.run(
        [str(python), "-m", "hiagent_shim", "--describe"],
        env=shim_env(package, data_dir),
        capture_output=True,
        timeout=STEP_S,
        check=False,
    )
    return done.returncode, json.loads(done.stdout), done.stderr.decode()


def test_describe_reports_the_handshake_and_every_plugins_metadata(
    shim_python: Path, data_dir: Path
) -> None:
    status, doc, _ = describe(shim_python, "hiagent_plugin_multi", data_dir)
    assert status == 0
    assert doc["ok"] is True
    assert doc["handshake"]["package"] == {"name": "hiagent-plugin-multi", "version": "0.1.0"}
    assert doc["handshake"]["plugins"] == ["alpha", "beta"]
    assert list(doc["metadata"]) == ["alpha", "beta"]
    assert doc["metadata"]["alpha"]["name"] == "阿尔法"
    assert list(doc["metadata"]["beta"]["tools"]) == ["shout"]


def test_describe_uses_the_packaged_metadata_and_the_icon(
    shim_python: Path, data_dir: Path
) -> None:
    status, doc, _ = describe(shim_python, "hiagent-plugin-clock", data_dir)
    assert status == 0
    clock = doc["metadata"]["时间工具"]
    assert clock["tools"]["current_time"]["labels"]["name_zh_hans"] == "当前时间"
    assert clock["icon"].startswith("file://")
    assert clock["icon"].endswith("/hiagent_plugin_clock/icon.png")


def test_describe_keeps_plugin_prints_off_stdout(shim_python: Path, data_dir: Path) -> None:
    status, doc, stderr = describe(shim_python, "hiagent-plugin-noisy", data_dir)
    assert status == 0
    assert list(doc["metadata"]) == ["noisy"]
    assert "noisy: import-time chatter on stdout" in stderr


def test_describe_reports_a_plugin_that_fails_to_import_and_exits_1(
    shim_python: Path, data_dir: Path
) -> None:
    status, doc, stderr = describe(shim_python, "hiagent-plugin-crash-on-import", data_dir)
    assert status == 1
    assert doc["ok"] is False
    assert doc["error"]["code"] == "PluginImportFailed"
    assert doc["error"]["data"]["plugin"] == "crash_on_import"
    assert "Traceback (most recent call last)" in stderr


def test_describe_reports_a_missing_package_and_exits_1(shim_python: Path, data_dir: Path) -> None:
    status, doc, _ = describe(shim_python, "hiagent-plugin-absent", data_dir)
    assert (status, doc["ok"], doc["error"]["code"]) == (1, False, "PackageNotFound")


def describe_waiting(
    python: Path, package: str, data_dir: Path, line: bytes
) -> tuple[int, bytes, str]:
    """`--describe --wait`, told `line` once it has started."""
    done = subprocess.run(
        [str(python), "-m", "hiagent_shim", "--describe", "--wait"],
        env=shim_env(package, data_dir),
        input=line,
        capture_output=True,
        timeout=STEP_S,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr.decode()


def test_describe_wait_describes_once_told_go(shim_python: Path, data_dir: Path) -> None:
    status, out, _ = describe_waiting(shim_python, "hiagent_plugin_multi", data_dir, b"go\n")
    assert status == 0
    doc = json.loads(out)
    assert doc["ok"] is True
    assert list(doc["metadata"]) == ["alpha", "beta"]


def test_describe_wait_reports_failures_like_describe(shim_python: Path, data_dir: Path) -> None:
    status, out, _ = describe_waiting(
        shim_python, "hiagent-plugin-crash-on-import", data_dir, b"go\n"
    )
    assert status == 1
    assert json.loads(out)["error"]["code"] == "PluginImportFailed"


def test_describe_wait_exits_silently_when_the_host_gives_up(
    shim_python: Path, data_dir: Path
) -> None:
    for line in (b"", b"stop\n"):  # EOF, or any line but `go`
        status, out, _ = describe_waiting(shim_python, "hiagent_plugin_multi", data_dir, line)
        assert (status, out) == (0, b"")


def test_describe_wait_sees_a_package_installed_while_it_waited(
    shim_python: Path, data_dir: Path, tmp_path: Path
) -> None:
    """The import caches are dropped on `go`: a distribution that appeared later is found."""
    site = tmp_path / "site"
    site.mkdir()
    env = shim_env("hiagent-plugin-late", data_dir) | {"PYTHONPATH": str(site)}
    proc = subprocess.Popen(
        [str(shim_python), "-m", "hiagent_shim", "--describe", "--wait"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        (site / "late_plugin.py").write_text(
            "from hiagent_plugin_sdk import BasePlugin\n\n"
            "class Late(BasePlugin):\n"
            '    """Installed after the probe started."""\n\n'
            '    hiagent_tools = ["hi"]\n\n'
            "    def hi(self) -> str:\n"
            '        """Say hi."""\n'
            '        return "hi"\n'
        )
        info = site / "hiagent_plugin_late-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: hiagent-plugin-late\nVersion: 1.0\n"
        )
        (info / "entry_points.txt").write_text("[hiagent.plugins]\nlate = late_plugin:Late\n")
        out, err = proc.communicate(b"go\n", timeout=STEP_S)
    finally:
        proc.kill()
        proc.wait()
    doc = json.loads(out)
    assert doc["ok"] is True, err.decode()
    assert doc["handshake"]["plugins"] == ["late"]
