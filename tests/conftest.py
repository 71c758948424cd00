"""Session-wide fixtures: the offline wheelhouse and the fixture plugin wheels."""

from __future__ import annotations

from pathlib import Path

import pytest

from hiagent_host.packages.shim_wheels import build_sdk_wheel, build_shim_wheel
from tests.support.plugins import build_fixture, fixture_names

# The S3 server fixtures, for every test: plugin storage's, and the packages store's.
from tests.support.s3 import _packages_moto, packages_s3, s3_server  # noqa: F401
from tests.support.wheelhouse import ensure_wheelhouse


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """Third-party wheels (SDK and fixture dependencies), fetched once per machine."""
    return ensure_wheelhouse()


@pytest.fixture(scope="session")
def built_wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every fixture plugin, plus the shim and the SDK, built into real wheels once."""
    out = tmp_path_factory.mktemp("wheels")
    wheels = {name: build_fixture(name, out) for name in fixture_names()}
    wheels["hiagent-shim"] = build_shim_wheel(out)
    wheels["hiagent-plugin-sdk"] = build_sdk_wheel(out)
    return wheels
