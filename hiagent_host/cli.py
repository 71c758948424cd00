"""The `hiagent-host` command: one table of subcommands, each a thin wrapper over the host.

The package commands (`install`, `list`, `show`, `venv`, `delete`, `recover`) call the same
`PackageManager` the HTTP API uses. Each returns a JSON-able result that is printed as text,
or as JSON with `--json`; a failure prints `hiagent-host: <code>: <message>` on stderr (with
`--json`, the error object as JSON on stderr) and exits non-zero. Other parts of the host add
their subcommands by putting their `add_arguments(subparsers)` into `REGISTRARS`; such a
subcommand sets `func(args) -> int` as its default.

Exit codes: 0 success, 1 the operation failed, 2 usage or configuration error, 3 the package
named is not installed, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from hiagent_host import cli_jobs, cli_new, cli_run, cli_serve
from hiagent_host.cli_exit import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE
from hiagent_host.cli_jobs import source_to_uri
from hiagent_host.cli_output import ProgressLine, render_record, size
from hiagent_host.cluster import coordinator_for, new_node_id
from hiagent_host.config import load_config
from hiagent_host.errors import CONFIG_INVALID, PACKAGE_NOT_FOUND, HostError
from hiagent_host.packages import PackageManager, PackageRecord

Registrar = Callable[[Any], None]  # receives argparse's subparsers object


@dataclass(frozen=True)
class Command:
    """A package subcommand: its arguments, and what it does with a PackageManager."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, PackageManager], Any]
    render: Callable[[Any], str]


# ---- the package commands ------------------------------------------------------------


def _name_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="distribution name (any PEP 503 spelling)")
    parser.add_argument("version", help="version (any PEP 440-equal spelling)")


def _install_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", metavar="PATH_OR_URI", help="a wheel path, or a file://, http:// or https:// URI"
    )
    parser.add_argument("--force", action="store_true", help="replace the version if installed")
    parser.add_argument(
        "--filename", help="the wheel's file name (default: the source's last segment)"
    )
    parser.add_argument(
        "--async", dest="use_async", action="store_true",
        help="install through a running server's queue, showing progress until it finishes",
    )  # fmt: skip
    cli_jobs.add_install_async_arguments(parser)


def _install(args: argparse.Namespace, pm: PackageManager) -> Any:
    uri, filename = source_to_uri(args.source, args.filename)
    if getattr(args, "json", False):
        return _full(pm.install(uri, filename, force=args.force))
    progress = ProgressLine(sys.stderr)
    try:
        record = pm.install(
            uri,
            filename,
            force=args.force,
            progress=lambda phase: progress.show(None, phase),
            on_bytes=progress.bytes,
        )
    finally:
        progress.done()
    return _full(record)


def _list(args: argparse.Namespace, pm: PackageManager) -> Any:
    """The installed versions (the store's, with one), and whether this node has each."""
    return [_listed(r) | {"materialised": pm.is_materialised(r)} for r in pm.list()]


def _show(args: argparse.Namespace, pm: PackageManager) -> Any:
    return _full(pm.get(args.name, args.version))


def _venv(args: argparse.Namespace, pm: PackageManager) -> Any:
    record = pm.get(args.name, args.version)
    return {"venv_path": record.venv_path, "python": str(pm.venv_python(record))}


def _delete(args: argparse.Namespace, pm: PackageManager) -> Any:
    return {
        "name": args.name,
        "version": args.version,
        "deleted": pm.delete(args.name, args.version),
    }


def _recover(args: argparse.Namespace, pm: PackageManager) -> Any:
    return {"removed": [str(p) for p in pm.recover()]}


def _full(record: PackageRecord) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(record)
    return data


def _listed(record: PackageRecord) -> dict[str, Any]:
    return record.brief_with_entry() | {
        "installed_at": record.installed_at,
        "venv_path": record.venv_path,
        "disk_size_bytes": record.disk_size_bytes,
        "build": record.build,
    }


def _render_list(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no packages installed"
    table = [["NAME", "VERSION", "PLUGINS", "INSTALLED", "SIZE", "BUILD", "HERE", "VENV"]]
    table += [
        [r["name"], r["version"], ", ".join(r["plugins"]), r["installed_at"],
         size(r["disk_size_bytes"]), r["build"], "yes" if r["materialised"] else "no",
         r["venv_path"]]
        for r in rows
    ]  # fmt: skip
    widths = [max(_width(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join(
        "  ".join(c + " " * (w - _width(c)) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def _width(text: str) -> int:
    """Terminal columns of `text` (CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _render_delete(data: dict[str, Any]) -> str:
    what = f"{data['name']} {data['version']}"
    return f"deleted {what}" if data["deleted"] else f"{what} was not installed; nothing to do"


def _render_recover(data: dict[str, Any]) -> str:
    removed = data["removed"]
    return "\n".join(["removed:", *removed]) if removed else "nothing to clean up"


COMMANDS: Final[tuple[Command, ...]] = (
    Command("install", "install a plugin wheel into a venv of its own", _install_arguments,
            _install, render_record),
    Command("list", "list installed package versions", lambda p: None, _list, _render_list),
    Command("show", "show a package version's record", _name_version, _show, render_record),
    Command("venv", "print a package version's venv path (for `source <path>/bin/activate`)",
            _name_version, _venv, lambda d: str(d["venv_path"])),
    Command("delete", "delete a package version (idempotent)", _name_version, _delete,
            _render_delete),
    Command("recover", "remove what interrupted installs and deletes left behind",
            lambda p: None, _recover, _render_recover),
)  # fmt: skip


def add_package_commands(subparsers: Any) -> None:
    for command in COMMANDS:
        parser = subparsers.add_parser(command.name, help=command.help, description=command.help)
        _common_options(parser, sub=True)
        command.arguments(parser)
        parser.set_defaults(func=_package_command(command))


def _package_command(command: Command) -> Callable[[argparse.Namespace], int]:
    def func(args: argparse.Namespace) -> int:
        if getattr(args, "use_async", False):
            return cli_jobs.cmd_install_async(args)
        as_json = bool(getattr(args, "json", False))
        try:
            config = load_config(getattr(args, "config", None))
            pm = PackageManager(config, coordinator=coordinator_for(config, new_node_id()))
            result = command.run(args, pm)
        except HostError as exc:
            return _fail(exc, as_json)
        if as_json:
            print(json.dumps(result, ensure_ascii=False, indent=2))
        else:
            print(command.render(result))
        return EXIT_OK

    return func


def _fail(exc: HostError, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"error": exc.to_dict()}, ensure_ascii=False), file=sys.stderr)
    else:
        print(f"hiagent-host: {exc.code}: {exc.message}", file=sys.stderr)
        problems = exc.data.get("problems") if isinstance(exc.data, dict) else None
        tail = exc.data.get("output_tail") if isinstance(exc.data, dict) else None
        for problem in problems or []:
            print(f"  - {problem}", file=sys.stderr)
        if tail:
            print(f"installer output (last lines):\n{tail.rstrip()}", file=sys.stderr)
    if exc.code == PACKAGE_NOT_FOUND:
        return EXIT_NOT_FOUND
    return EXIT_USAGE if exc.code == CONFIG_INVALID else EXIT_FAILED


# ---- the command line ----------------------------------------------------------------

# Everything that adds subcommands; each takes argparse's subparsers object.
REGISTRARS: Final[tuple[Registrar, ...]] = (
    add_package_commands,
    cli_serve.add_arguments,
    cli_jobs.add_arguments,
    cli_run.add_arguments,
    cli_new.add_arguments,
)


def _common_options(parser: argparse.ArgumentParser, *, sub: bool) -> None:
    # On subcommands the defaults are suppressed, so a value given before the subcommand stays.
    default = argparse.SUPPRESS if sub else None
    parser.add_argument("--config", default=default, help="path to runtime.toml")
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS if sub else False,
        help="print results (and errors) as JSON",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hiagent-host",
        description="Install HiAgent plugin wheels into venvs of their own and serve them.",
    )
    _common_options(parser, sub=False)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in REGISTRARS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `hiagent-host`; return the exit code."""
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.WARNING, format="hiagent-host: %(levelname)s: %(message)s"
        )
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("hiagent-host: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
