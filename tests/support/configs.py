"""Configurations for tests and benchmarks: defaults, data under one root, installs offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import msgspec

from hiagent_host.config import Config, load_config

PATH_KEYS: Final = ("extensions_dir", "venvs_dir", "state_dir")


def offline_config(root: Path, wheelhouse: Path, **packages: Any) -> Config:
    """Defaults, with every directory under `root` and installs offline from `wheelhouse`.

    `packages` adds or overrides `[packages]` keys.
    """
    base = load_config(use_lookup=False, environ={})
    paths = msgspec.structs.replace(
        base.paths, **{key: root / key.removesuffix("_dir") for key in PATH_KEYS}
    )
    settings: dict[str, Any] = {"no_index": True, "find_links": [str(wheelhouse)]} | packages
    return msgspec.structs.replace(
        base, paths=paths, packages=msgspec.structs.replace(base.packages, **settings)
    )
