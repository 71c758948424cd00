"""Fixtures for the in-process SDK tests: the plugin environment and plugins written to disk."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from hiagent_plugin_sdk.extensions import load
from hiagent_plugin_sdk.request import setup_ssrf_proxy_env

ENV_NAMES = (
    "HIAGENT_PLUGIN_DATA_DIR",
    "HIAGENT_PLUGIN_CONFIG",
    "HIAGENT_PACKAGE_NAME",
    "HIAGENT_PACKAGE_VERSION",
)
PROXY_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")

WritePackage = Callable[[str, dict[str, str]], ModuleType]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def plugin_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A clean plugin environment whose data dir is `tmp_path/data`; caches reset around it.

    The proxy variables `setup_ssrf_proxy_env()` writes are restored afterwards too.
    """
    for name in ENV_NAMES + PROXY_NAMES:
        monkeypatch.setenv(name, "")  # recorded, so teardown restores the original state
        monkeypatch.delenv(name)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    monkeypatch.setenv("HIAGENT_PLUGIN_DATA_DIR", str(data_dir))
    monkeypatch.setenv("HIAGENT_PACKAGE_NAME", "hiagent-plugin-demo")
    monkeypatch.setenv("HIAGENT_PACKAGE_VERSION", "0.2.0")
    load.cache_clear()
    setup_ssrf_proxy_env.cache_clear()
    yield data_dir
    load.cache_clear()
    setup_ssrf_proxy_env.cache_clear()


@pytest.fixture
def site_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fresh directory at the front of sys.path."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


@pytest.fixture
def write_package(site_dir: Path) -> Iterator[WritePackage]:
    """Write package `name` (files relative to its directory) into `site_dir` and import it.

    Use a name unique to the test: its modules are dropped from sys.modules afterwards.
    """
    written: list[str] = []

    def write(name: str, files: dict[str, str]) -> ModuleType:
        package = site_dir / name
        package.mkdir()
        for relative, text in files.items():
            (package / relative).write_text(textwrap.dedent(text), encoding="utf-8")
        importlib.invalidate_caches()
        written.append(name)
        return importlib.import_module(name)

    yield write
    for loaded in list(sys.modules):
        if loaded.split(".")[0] in written:
            del sys.modules[loaded]


def write_dist_info(site: Path, dist: str, version: str, entry_points: str = "") -> None:
    """A minimal installed-distribution record, so importlib.metadata finds `dist`."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8"
    )
    if entry_points:
        (info / "entry_points.txt").write_text(textwrap.dedent(entry_points), encoding="utf-8")
