"""Console script: write the metadata YAML of every `hiagent.plugins` entry point of a distribution.

Usage: ``hiagent-gen-metadata <distribution-name>`` (or point a plugin's own `gen_metadata`
console script at `hiagent_plugin_sdk.gen_metadata:main` and pass the name).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib import metadata as importlib_metadata
from typing import Final

from hiagent_plugin_sdk.utils import gen_metadata

ENTRY_POINT_GROUP: Final = "hiagent.plugins"
USAGE: Final = "usage: hiagent-gen-metadata <distribution-name>"


def main(argv: Sequence[str] | None = None) -> int:
    """Write one YAML per plugin of the distribution named by argv[1]; print each path."""
    args = list(sys.argv if argv is None else argv)
    if len(args) != 2:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        dist = importlib_metadata.distribution(args[1])
    except importlib_metadata.PackageNotFoundError:
        print(f"distribution {args[1]!r} is not installed", file=sys.stderr)
        return 1
    plugins = [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
    if not plugins:
        print(f"{args[1]} has no {ENTRY_POINT_GROUP} entry points", file=sys.stderr)
        return 1
    for entry in plugins:
        print(f"{entry.name}: {gen_metadata(entry.load())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
