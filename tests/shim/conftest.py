"""The real shim in a real venv: one venv per session holding every fixture plugin package."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest

from tests.support.venvs import make_plugin_venv

# The fixture packages the contract tests serve; one venv holds them all, and
# HIAGENT_PACKAGE_NAME picks the one a shim serves.
SHIM_FIXTURES: Final = (
    "clock",
    "calc",
    "regex",
    "stream",
    "secret",
    "multi",
    "crash_on_import",
    "exit_mid_call",
    "segfault",
    "hang",
    "ignore_sigterm",
    "noisy",
    "grandchild",
    "huge",
    "memhog",
    "forkbomb",
    "echo",
    "unrenderable",
)


@pytest.fixture(scope="session")
def shim_python(
    tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, built_wheels: dict[str, Path]
) -> Path:
    """The python of a venv with the shim, the SDK and every fixture plugin installed."""
    wheels = [built_wheels["hiagent-shim"], built_wheels["hiagent-plugin-sdk"]]
    wheels += [built_wheels[name] for name in SHIM_FIXTURES]
    return make_plugin_venv(tmp_path_factory.mktemp("shim") / "venv", wheels, wheelhouse)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path
