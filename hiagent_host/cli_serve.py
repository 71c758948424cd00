"""The `serve` and `ps` commands: run the HTTP server; show a running server's plugin processes."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any, Final

import msgspec

from hiagent_host.cli_exit import EXIT_FAILED, EXIT_USAGE
from hiagent_host.cli_output import add_json_option
from hiagent_host.config import Config, load_config, read_api_keys, with_server
from hiagent_host.errors import HostError
from hiagent_host.packages import sandbox

API_KEY_ENV: Final = "HIAGENT_API_KEY"
# `ps` asks a local server a cheap question: it answers at once or not at all.
PS_TIMEOUT_S: Final = 10.0
PS_COLUMNS: Final = (
    ("PACKAGE", "pkg"),
    ("VERSION", "version"),
    ("PID", "pid"),
    ("STATE", "state"),
    ("UPTIME", "uptime_s"),
    ("IN FLIGHT", "calls_in_flight"),
    ("CALLS", "calls_total"),
    ("RESTARTS", "restarts"),
    ("RSS", "rss_bytes"),
    ("SANDBOX", "sandbox"),
    ("LAST EXIT", "last_exit_reason"),
    ("BUILD", "build"),
    ("NODE", "node"),
)


def add_arguments(subparsers: Any) -> None:
    """Register `serve` and `ps` on an argparse subparsers object."""
    serve = subparsers.add_parser(
        "serve",
        help="run the HTTP server (Hypercorn)",
        description="Serve the /v1 API, the console (/console) and the docs (/docs) until "
        "SIGTERM or Ctrl-C, then drain and stop every plugin process.",
    )
    serve.add_argument("--host", help="address to bind (default: server.host)")
    serve.add_argument("--port", type=int, help="TCP port (default: server.port)")
    serve.add_argument("--config", default=argparse.SUPPRESS, help="path to runtime.toml")
    serve.add_argument(
        "--with-worker",
        action="store_true",
        default=None,
        help="redis queue backend: also run an install worker in this process",
    )
    add_json_option(serve, help="log JSON lines (overrides [logging] json)")
    serve.set_defaults(func=cmd_serve)

    ps = subparsers.add_parser(
        "ps",
        help="list a running server's plugin processes",
        description="Ask a running server (ListProcesses) for its plugin processes: package, "
        "pid, state, uptime, calls, restarts, memory and the last exit reason.",
    )
    ps.add_argument("--config", default=argparse.SUPPRESS, help="path to runtime.toml")
    ps.add_argument("--url", help="server base URL (default: from server.host/port)")
    ps.add_argument(
        "--api-key", help=f"API key (default: ${API_KEY_ENV}, else the first configured)"
    )
    add_json_option(ps, help="print the raw JSON list")
    ps.set_defaults(func=cmd_ps)


def _config(args: argparse.Namespace) -> Config:
    return load_config(getattr(args, "config", None))


def cmd_serve(args: argparse.Namespace) -> int:
    from hiagent_host.serve import serve  # Hypercorn is loaded only to serve

    try:
        options = {"host": args.host, "port": args.port}
        config = with_server(_config(args), **{k: v for k, v in options.items() if v is not None})
        if getattr(args, "json", False):
            as_json = msgspec.structs.replace(config.logging, json=True)
            config = msgspec.structs.replace(config, logging=as_json)
        read_api_keys(config)
        sandbox.require(config)  # `pool.sandbox = "on"` where there can be none: refuse
    except HostError as exc:
        print(f"hiagent-host serve: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    return serve(config, with_worker=args.with_worker)


def base_url(config: Config) -> str:
    host = config.server.host
    if host in {"0.0.0.0", "::", ""}:
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.server.port}"


def cmd_ps(args: argparse.Namespace) -> int:
    try:
        config = _config(args)
        keys = sorted(read_api_keys(config))
    except HostError as exc:
        print(f"hiagent-host ps: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    base = (args.url or base_url(config)).rstrip("/")
    url = base + "/v1/ListProcesses"
    key = args.api_key or os.environ.get(API_KEY_ENV) or (keys[0] if keys else None)
    request = urllib.request.Request(url, data=b"{}", method="POST")
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=PS_TIMEOUT_S) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = _json_or_none(exc.read())
        error = (body or {}).get("error") or {}
        print(
            f"hiagent-host ps: {error.get('code', exc.code)}: {error.get('message', exc.reason)}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except (urllib.error.URLError, OSError) as exc:
        print(f"hiagent-host ps: no server answering at {url}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    processes = body.get("data") or []
    if getattr(args, "json", False):
        print(json.dumps(processes, indent=2, ensure_ascii=False))
    else:
        print(format_table(processes))
        line = _sandbox_line(base)
        if line is not None:
            print(line)
    return 0


def _sandbox_line(base: str) -> str | None:
    """`sandbox: <mode>, on|OFF: <reason>` from /v1/health (no key needed), or None."""
    try:
        with urllib.request.urlopen(base + "/v1/health", timeout=PS_TIMEOUT_S) as response:
            found = json.loads(response.read())["data"]["sandbox"]
    except urllib.error.HTTPError as exc:  # degraded: the health object is in error.data
        found = ((_json_or_none(exc.read()) or {}).get("error") or {}).get("data", {})
        found = (found or {}).get("sandbox")
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(found, dict):
        return None
    state = "on" if found.get("active") else "OFF"
    return f"sandbox: {found.get('mode')}, {state}: {found.get('reason')}"


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def format_table(processes: list[dict[str, Any]]) -> str:
    if not processes:
        return "no plugin processes running"
    rows = [[title for title, _ in PS_COLUMNS]]
    rows += [[_cell(key, p.get(key)) for _, key in PS_COLUMNS] for p in processes]
    widths = [max(len(row[i]) for row in rows) for i in range(len(PS_COLUMNS))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "uptime_s":
        return f"{float(value):.0f}s"
    if key == "rss_bytes":
        return f"{int(value) / (1024 * 1024):.1f}M"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    """`serve`/`ps` on their own (the full CLI is `hiagent_host.cli`)."""
    parser = argparse.ArgumentParser(prog="hiagent-host")
    add_arguments(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
