"""Importing the SDK: the public names, and no side effects (output, logging, aiohttp)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import hiagent_plugin_sdk
import pytest
from hiagent_plugin_sdk import BuiltinCategory, secretLogger

# A fresh interpreter imports the SDK in well under a second; this only bounds a hang.
SUBPROCESS_TIMEOUT_S = 60

PUBLIC_NAMES = {
    "hiagent_plugin_sdk": [
        "BasePlugin",
        "ConfigValidateMixin",
        "set_meta",
        "set_tool_meta",
        "SecretField",
        "BuiltinCategory",
        "arequest",
        "assrf_request",
        "setup_ssrf_proxy_env",
        "secretLogger",
    ],
    "hiagent_plugin_sdk.schema": [
        "Metadata",
        "ToolMetadata",
        "Labels",
        "PackageInfo",
        "ServerSentEvent",
        "HttpError",
        "HttpException",
    ],
    "hiagent_plugin_sdk.extensions": ["load"],
    "hiagent_plugin_sdk.utils": ["get_fn_schema", "gen_metadata", "arequest", "assrf_request"],
    "hiagent_plugin_sdk.v1": ["BasePlugin", "set_meta", "set_tool_meta", "SecretField"],
}

IMPORT_PROBE = """
import logging, sys
root = logging.getLogger()
handlers_before, level_before = list(root.handlers), root.level
import hiagent_plugin_sdk
from hiagent_plugin_sdk import extensions, schema, utils
assert root.handlers == handlers_before, root.handlers
assert root.level == level_before, root.level
assert "aiohttp" not in sys.modules, "aiohttp was imported"
assert "yaml" not in sys.modules, "yaml was imported"
"""


def run_python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **env},
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )


@pytest.mark.parametrize("module", sorted(PUBLIC_NAMES))
def test_every_public_name_is_importable(module: str) -> None:
    imported = __import__(module, fromlist=["_"])
    missing = [name for name in PUBLIC_NAMES[module] if not hasattr(imported, name)]
    assert missing == []


def test_import_prints_nothing_and_leaves_logging_and_aiohttp_alone(tmp_path: Path) -> None:
    result = run_python(IMPORT_PROBE, tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_import_needs_no_config_file_or_environment(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "HIAGENT_PLUGIN_CONFIG": "", "HIAGENT_PLUGIN_DATA_DIR": ""}
    result = run_python("import hiagent_plugin_sdk", tmp_path, **env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_secret_logger_is_the_disabled_sensitive_logger() -> None:
    assert secretLogger.name == "sensitive"
    assert secretLogger.disabled


def test_secret_logger_is_enabled_by_hiagent_secret_log(tmp_path: Path) -> None:
    code = "from hiagent_plugin_sdk import secretLogger; print(secretLogger.disabled)"
    assert run_python(code, tmp_path, HIAGENT_SECRET_LOG="1").stdout == "False\n"
    assert run_python(code, tmp_path, HIAGENT_SECRET_LOG="0").stdout == "True\n"


def test_arequest_without_aiohttp_says_how_to_install_it(tmp_path: Path) -> None:
    code = """
import asyncio, sys
sys.modules["aiohttp"] = None  # as if it were not installed
from hiagent_plugin_sdk import arequest, HttpException

async def main():
    try:
        async with arequest("GET", "http://127.0.0.1:9/"):
            pass
    except ImportError as exc:
        assert isinstance(exc, HttpException) and exc.code == "MissingDependency", exc
        print(exc.message)

asyncio.run(main())
"""
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "hiagent-plugin-sdk[http]" in result.stdout


def test_builtin_categories_equal_their_names() -> None:
    names = [
        "WebSearch",
        "Productivity",
        "TextProcessing",
        "ImageProcessing",
        "AudioVideo",
        "LifeAssistant",
        "Education",
        "News",
        "Entertainment",
        "Logistics",
    ]
    assert [getattr(BuiltinCategory, name) for name in names] == names


def test_sdk_version_matches_its_distribution() -> None:
    assert hiagent_plugin_sdk.__version__ == "1.0.0"
