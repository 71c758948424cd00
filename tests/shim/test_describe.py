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
