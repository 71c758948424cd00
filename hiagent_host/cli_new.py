"""`hiagent-host new NAME` scaffolds a plugin project; `hiagent-host build [DIR]` builds its wheel.

The project `new` writes is an ordinary setuptools project (pyproject with the
`hiagent.plugins` entry point, a package holding a plugin class with a sync and an async tool
and an icon, a pytest test) that installs into a host unchanged. `build` makes its wheel with
the host's own offline builder (`hiagent_host.packages.wheelbuild`): no network, no build
backend, the same bytes for the same sources. `pip wheel DIR` builds an equivalent wheel.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import struct
import sys
import zlib
from pathlib import Path
from string import Template
from typing import Any, Final

from hiagent_host.cli_output import add_json_option
from hiagent_host.errors import INVALID_REQUEST, HostError
from hiagent_host.packages.wheelbuild import build_wheel, read_project

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
# PEP 508 distribution names.
_DIST_NAME: Final = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
ICON_SIZE: Final = 64
ICON_RGB: Final = (0x24, 0x56, 0xD6)

PYPROJECT: Final = Template("""\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "$title: a HiAgent plugin."
requires-python = ">=3.9"
# Your runtime dependencies. Not hiagent-plugin-sdk: the host puts its own into every venv.
dependencies = []

[project.entry-points."hiagent.plugins"]
# Callers pass the entry-point name as `plugin`.
"$entry" = "$module:$cls"

[tool.setuptools]
packages = ["$module"]

[tool.setuptools.package-data]
$module = ["icon.png"]
""")

PLUGIN: Final = Template('''\
"""$title: a HiAgent plugin (scaffolded by `hiagent-host new`)."""

from typing import Annotated, Any, Dict

from hiagent_plugin_sdk import BasePlugin, set_meta
from pydantic import Field


@set_meta(cn_name="$entry", en_name="$title")
class $cls(BasePlugin):
    """Greets people and counts words."""  # the plugin's description

    hiagent_tools = ["greet", "count_words"]  # the tool methods, in order

    def greet(
        self, name: Annotated[str, Field(description="who to greet")] = "world"
    ) -> Annotated[str, Field(description="the greeting")]:
        """Say hello (a sync tool: it runs on a worker thread, so blocking I/O is fine)."""
        return f"Hello, {name}!"

    async def count_words(
        self, text: Annotated[str, Field(description="the text to count")]
    ) -> Dict[str, Any]:
        """Count the words and characters of a text (an async tool: never block in it)."""
        return {"words": len(text.split()), "characters": len(text)}
''')

TEST: Final = Template('''\
"""The plugin's tools, called the way the host calls them (no host needed)."""

import asyncio

from $module import $cls


def test_greet_says_hello() -> None:
    assert asyncio.run($cls.run_plugin_tool("greet", {"name": "Ada"}, None)) == "Hello, Ada!"


def test_count_words_counts_words_and_characters() -> None:
    result = asyncio.run($cls.run_plugin_tool("count_words", {"text": "a b c"}, None))
    assert result == {"words": 3, "characters": 5}


def test_the_metadata_lists_both_tools() -> None:
    assert list($cls.get_metadata().tools) == ["greet", "count_words"]
''')

README: Final = Template("""\
# $dist

A HiAgent plugin: `$entry` with the tools `greet` (sync) and `count_words` (async).

    hiagent-host build .                      # -> dist/$wheel
    hiagent-host install dist/$wheel          # into the host's package store
    hiagent-host run $dist 0.1.0 $entry greet --input '{"name": "Ada"}'
    python -m pytest tests                    # the plugin's own test (needs the SDK importable)
""")


def add_arguments(subparsers: Any) -> None:
    """Add `new` and `build` to the `hiagent-host` subcommands."""
    new = subparsers.add_parser(
        "new",
        help="scaffold a plugin project (pyproject, plugin class, icon, test)",
        description="Write a new plugin project into ./NAME (or --dir): a pyproject with the "
        "hiagent.plugins entry point, a plugin class with a sync and an async tool, an icon "
        "and a test. It builds and installs unchanged.",
    )
    new.add_argument("name", help="the distribution name, e.g. hiagent-plugin-hello")
    new.add_argument("--dir", type=Path, help="where to create it (default: ./NAME)")
    new.add_argument(
        "--plugin", help="the entry-point name callers pass as `plugin` (default: from NAME)"
    )
    add_json_option(new)
    new.set_defaults(func=cmd_new)

    build = subparsers.add_parser(
        "build",
        help="build a plugin project's wheel (offline, no build backend)",
        description="Build the wheel of the plugin project in DIR (default: .) into DIR/dist "
        "(or --out) and print its path.",
    )
    build.add_argument("dir", nargs="?", type=Path, default=Path(), help="the project directory")
    build.add_argument("--out", type=Path, help="where the wheel goes (default: DIR/dist)")
    add_json_option(build)
    build.set_defaults(func=cmd_build)


# ---- new ------------------------------------------------------------------------------


def scaffold(name: str, target: Path, plugin: str | None = None) -> dict[str, Any]:
    """Write the project for distribution `name` into `target` (absent or empty)."""
    if not _DIST_NAME.fullmatch(name):
        raise _invalid(f"{name!r} is not a valid distribution name (letters, digits, . _ -)")
    module = re.sub(r"[-_.]+", "_", name).lower()
    if module[0].isdigit():
        raise _invalid(f"{name!r} cannot be a Python package name: it starts with a digit")
    short = re.sub(r"^hiagent_plugin_", "", module) or module
    entry = plugin or short
    if not entry.strip() or any(c in entry for c in "=[]\n\r"):
        raise _invalid(f"{entry!r} cannot be an entry-point name")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise _invalid(f"{target} already exists and is not an empty directory")
    title = " ".join(part.capitalize() for part in short.split("_"))
    values = {
        "dist": name,
        "module": module,
        "cls": title.replace(" ", "") + "Plugin",
        "entry": entry,
        "title": title,
        "wheel": f"{module}-0.1.0-py3-none-any.whl",
    }
    files = {
        "pyproject.toml": PYPROJECT.substitute(values),
        f"{module}/__init__.py": PLUGIN.substitute(values),
        "tests/test_plugin.py": TEST.substitute(values),
        "README.md": README.substitute(values),
    }
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (target / module / "icon.png").write_bytes(icon_png())
    return {
        "name": name,
        "directory": str(target.resolve()),
        "package": module,
        "plugin": entry,
        "files": sorted([*files, f"{module}/icon.png"]),
    }


def icon_png(size: int = ICON_SIZE, rgb: tuple[int, int, int] = ICON_RGB) -> bytes:
    """A filled circle on a transparent square, as a PNG (RGBA, 8 bits per channel)."""
    centre, radius = (size - 1) / 2, size / 2 - 2
    rows = b""
    for y in range(size):
        row = bytearray(b"\x00")  # filter type: none
        for x in range(size):
            inside = (x - centre) ** 2 + (y - centre) ** 2 <= radius**2
            row += bytes((*rgb, 255)) if inside else b"\x00\x00\x00\x00"
        rows += bytes(row)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def cmd_new(args: argparse.Namespace) -> int:
    as_json = bool(getattr(args, "json", False))
    target = args.dir if args.dir is not None else Path(args.name)
    try:
        result = scaffold(args.name, target, args.plugin)
    except HostError as exc:
        return _fail(exc, as_json, EXIT_USAGE)
    if as_json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(f"created {result['directory']}")
        for rel in result["files"]:
            print(f"  {rel}")
        print(f"next: hiagent-host build {target}")
    return EXIT_OK


# ---- build ----------------------------------------------------------------------------


def build(project: Path, out: Path | None = None) -> dict[str, Any]:
    """Build `project` into `out` (default: project/dist); what was built."""
    meta = read_project(project)
    wheel = build_wheel(project, out if out is not None else project / "dist").resolve()
    data = wheel.read_bytes()
    return {
        "wheel": str(wheel),
        "name": meta.name,
        "version": meta.version,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def cmd_build(args: argparse.Namespace) -> int:
    as_json = bool(getattr(args, "json", False))
    try:
        result = build(args.dir, args.out)
    except HostError as exc:
        return _fail(exc, as_json, EXIT_FAILED)
    if as_json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(result["wheel"])  # only the path on stdout: `WHEEL=$(hiagent-host build)`
    return EXIT_OK


def _invalid(message: str) -> HostError:
    return HostError(message, code=INVALID_REQUEST, http_status=422)


def _fail(exc: HostError, as_json: bool, code: int) -> int:
    if as_json:
        print(json.dumps({"error": exc.to_dict()}, ensure_ascii=False), file=sys.stderr)
    else:
        print(f"hiagent-host: {exc.code}: {exc.message}", file=sys.stderr)
    return code
