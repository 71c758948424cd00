"""Fixture plugin projects under tests/fixtures/plugins, built into real wheels."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from hiagent_host.packages.wheelbuild import build_wheel

FIXTURES: Final = Path(__file__).resolve().parent.parent / "fixtures" / "plugins"


def fixture_names() -> list[str]:
    return sorted(p.name for p in FIXTURES.iterdir() if (p / "pyproject.toml").is_file())


def build_fixture(name: str, out_dir: Path) -> Path:
    """Build the fixture project `tests/fixtures/plugins/<name>` into a wheel in `out_dir`."""
    return build_wheel(FIXTURES / name, out_dir)
