"""`hiagent-host run`: run one tool of an installed package through a pool of this process.

    hiagent-host run NAME VERSION PLUGIN TOOL --input JSON [--cfg JSON] [--stream] [--timeout-s S]

The result is printed as JSON on stdout; with `--stream`, each item is printed as one JSON line
as it arrives. `--input` and `--cfg` take JSON text, or `@path` to read it from a file. A
failure prints `hiagent-host: <code>: <message>` on stderr (the error object as JSON with
`--json`; a crash adds the plugin's last stderr lines) and exits non-zero, with the exit codes
of `hiagent_host.cli`. The process started for the call is stopped before the command returns.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import anyio

from hiagent_host.cli_exit import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE
from hiagent_host.cli_jobs import add_once
from hiagent_host.config import Config, load_config
from hiagent_host.errors import (
    CONFIG_INVALID,
    INVALID_REQUEST,
    PACKAGE_NOT_FOUND,
    PLUGIN_CRASHED,
    PLUGIN_START_FAILED,
    HostError,
)
from hiagent_host.packages import PackageManager
from hiagent_host.pool import Pool

# The exit codes of hiagent_host.cli (which imports this module, so they are repeated here).


def add_arguments(subparsers: Any) -> None:
    """Add `run` to the `hiagent-host` subcommands."""
    run = subparsers.add_parser(
        "run",
        help="run one tool of an installed package (in a plugin process of its own)",
        description="Run one tool through the same process pool the server uses.",
    )
    run.add_argument("name", help="distribution name (any PEP 503 spelling)")
    run.add_argument("version", help="version (any PEP 440-equal spelling)")
    run.add_argument("plugin", help="the plugin's entry-point name")
    run.add_argument("tool", help="the tool's name")
    run.add_argument("--input", default="{}", help="the tool input: a JSON object, or @path")
    run.add_argument("--cfg", default=None, help="the plugin config: a JSON object, or @path")
    run.add_argument("--stream", action="store_true", help="print items as they come (JSONL)")
    run.add_argument(
        "--timeout-s", type=float, default=None, help="deadline (default: pool.call_timeout_s)"
    )
    add_once(run, "--config", default=argparse.SUPPRESS, help="path to runtime.toml")
    add_once(run, "--json", action="store_true", default=argparse.SUPPRESS, help="errors as JSON")
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the tool; print its result (or items); return the exit code."""
    as_json = bool(getattr(args, "json", False))
    try:
        config = load_config(getattr(args, "config", None))
        tool_input = _json_object(args.input, "--input")
        cfg = None if args.cfg is None else _json_object(args.cfg, "--cfg")
        anyio.run(_run, config, args, tool_input, cfg, backend="asyncio")
    except HostError as exc:
        return _fail(exc, as_json)
    return EXIT_OK


async def _run(
    config: Config, args: argparse.Namespace, tool_input: dict[str, Any], cfg: dict[str, Any] | None
) -> None:
    async with Pool(config, PackageManager(config)) as pool:
        names = (args.name, args.version, args.plugin, args.tool)
        if args.stream:
            async with pool.stream_tool(*names, tool_input, cfg, timeout_s=args.timeout_s) as items:
                async for item in items:
                    _print(item)
        else:
            _print(await pool.run_tool(*names, tool_input, cfg, timeout_s=args.timeout_s))


def _json_object(text: str, option: str) -> dict[str, Any]:
    """`text` (or the file `@path` names) as a JSON object, or InvalidRequest."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise _invalid(f"{option}: cannot read {text[1:]}: {exc}") from exc
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise _invalid(f"{option}: not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise _invalid(f"{option}: must be a JSON object")
    return value


def _invalid(message: str) -> HostError:
    return HostError(message, code=INVALID_REQUEST, http_status=422)


def _print(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False), flush=True)


def _fail(exc: HostError, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"error": exc.to_dict()}, ensure_ascii=False), file=sys.stderr)
    else:
        print(f"hiagent-host: {exc.code}: {exc.message}", file=sys.stderr)
        data = exc.data if isinstance(exc.data, dict) else {}
        tail = (
            data.get("stderr_tail") if exc.code in (PLUGIN_CRASHED, PLUGIN_START_FAILED) else None
        )
        if tail:
            print(f"plugin stderr (last lines):\n{tail.rstrip()}", file=sys.stderr)
    if exc.code == PACKAGE_NOT_FOUND:
        return EXIT_NOT_FOUND
    if exc.code in (CONFIG_INVALID, INVALID_REQUEST):
        return EXIT_USAGE
    return EXIT_FAILED
