"""The import direction of docs/architecture.md, held by walking every module with ast."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Final

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOST = ROOT / "hiagent_host"
SHIM = ROOT / "hiagent_shim"

# layer → layers it may import (besides itself). Mirrors docs/architecture.md.
# `redact` (masking secrets in text) and `errors` are the bottom: every layer may use them.
BOTTOM = {"errors", "redact"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "redact": set(),
    "config": {"errors"},
    "logs": {"config"} | BOTTOM,
    "storage": {"config"} | BOTTOM,
    "store": {"config", "storage"} | BOTTOM,
    "rpc": {"config", "storage"} | BOTTOM,
    "packages": {"config", "storage", "store"} | BOTTOM,
    "pool": {"rpc", "packages", "storage", "config"} | BOTTOM,
    "jobs": {"pool", "packages", "storage", "config"} | BOTTOM,
    "cluster": {"jobs", "packages", "store", "storage", "config"} | BOTTOM,
    "api": {"cluster", "jobs", "pool", "packages", "store", "storage", "logs", "config"} | BOTTOM,
}
TOP = {"cli", "app", "serve", "__main__", "__init__"}
FRAMEWORK_OWNERS = {
    "starlette": {"api", "app"},
    "hypercorn": {"serve"},
    "arq": {"jobs"},
    "boto3": {"store"},
    "botocore": {"store"},
    "mcp": {"api"},
    "mcp_types": {"api"},
    "uvloop": {"serve"},
    # the wire's constants (rpc) and the shim's sources, built into a wheel (packages)
    "hiagent_shim": {"rpc", "packages"},
}
# Layers whose modules the others use only through the package (`hiagent_host.rpc`), never
# a module inside it: what the package exports is its whole interface.
SEALED: Final = frozenset({"rpc"})


def _layer_of(name: str) -> str:
    """`cli_jobs` belongs to `cli`, `config_redis` to `config`: a module beside its layer."""
    for layer in ("cli", "config"):
        if name.startswith(f"{layer}_"):
            return layer
    return name


def _layer(path: Path) -> str:
    rel = path.relative_to(HOST)
    return _layer_of(rel.parts[0].removesuffix(".py"))


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _host_modules() -> list[Path]:
    return sorted(HOST.rglob("*.py"))


@pytest.mark.parametrize("path", _host_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_host_module_imports_only_downward(path: Path) -> None:
    layer = _layer(path)
    for name in _imports(path):
        parts = name.split(".")
        if parts[0] == "hiagent_host" and len(parts) > 1 and layer not in TOP:
            target = _layer_of(parts[1])
            if target in {"__init__"} or target == layer:
                continue
            assert target in ALLOWED[layer], f"{layer} must not import {name}"
            if target in SEALED:
                assert len(parts) == 2, f"{layer} must use {target} through its package: {name}"
        if parts[0] in FRAMEWORK_OWNERS:
            owners = FRAMEWORK_OWNERS[parts[0]]
            assert layer in owners, f"only {owners} import {parts[0]}"
        assert parts[0] != "hiagent_plugin_sdk", "the host never imports the SDK"


def test_every_host_layer_is_in_the_table() -> None:
    layers = {_layer(p) for p in _host_modules()}
    assert layers <= set(ALLOWED) | TOP | {"__version__"}


def test_shim_imports_only_the_standard_library() -> None:
    for path in sorted(SHIM.rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or top == "hiagent_shim", f"{path}: {name}"
