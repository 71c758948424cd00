"""`hiagent-host run` runs one tool through a pool of its own and leaves no process behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

from tests.pool.support import PACKAGES, Store, plugin_processes

REPO: Final = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S: Final = 120
# `run` on its own (the lead registers it in hiagent_host.cli's REGISTRARS).
MAIN: Final = """
import argparse, sys
from hiagent_host import cli_run
parser = argparse.ArgumentParser(prog="hiagent-host")
cli_run.add_arguments(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""
MIS: Final = PACKAGES["pool_misbehave"]


@pytest.fixture
def config(store: Store, tmp_path: Path) -> Path:
    return store.runtime_toml(tmp_path / "runtime.toml")


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", MAIN, "run", "--config", str(config), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def test_run_prints_the_result_as_json(store: Store, config: Path) -> None:
    done = run(config, MIS, "1.0", "Misbehave", "echo", "--input", '{"text": "你好"}')
    assert (done.returncode, done.stdout) == (0, '"你好"\n'), done.stderr
    assert plugin_processes(store) == []


def test_run_stream_prints_each_item_as_a_json_line(store: Store, config: Path) -> None:
    done = run(config, MIS, "1.0.0", "Misbehave", "count", "--input", '{"n": 3}', "--stream")
    assert (done.returncode, done.stdout.splitlines()) == (0, ["0", "1", "2"]), done.stderr


def test_run_reads_the_input_from_a_file(config: Path, tmp_path: Path) -> None:
    (tmp_path / "input.json").write_text('{"text": "from a file"}')
    done = run(config, MIS, "1.0", "Misbehave", "echo", "--input", f"@{tmp_path / 'input.json'}")
    assert (done.returncode, done.stdout) == (0, '"from a file"\n'), done.stderr


def test_run_exits_non_zero_naming_the_error_code(store: Store, config: Path) -> None:
    missing = run(config, "no-such-package", "1.0", "p", "t")
    assert missing.returncode == 3
    assert "PackageNotFound" in missing.stderr

    bad_input = run(config, MIS, "1.0", "Misbehave", "echo", "--input", "[1, 2")
    assert bad_input.returncode == 2
    assert "InvalidRequest" in bad_input.stderr

    name = PACKAGES["exit_mid_call"]
    crashed = run(config, name, "0.1.0", "exit_mid_call", "exit_now", "--input", '{"code": 9}')
    assert crashed.returncode == 1
    assert "PluginCrashed" in crashed.stderr
    assert "exiting with status 9" in crashed.stderr  # the plugin's stderr tail
    assert plugin_processes(store) == []


def test_run_with_json_prints_the_error_object(config: Path) -> None:
    done = run(config, MIS, "1.0", "Misbehave", "no_such_tool", "--json")
    assert done.returncode == 1
    error = json.loads(done.stderr.strip().splitlines()[-1])["error"]
    assert (error["code"], error["http_code"]) == ("ToolNotFound", 404)
