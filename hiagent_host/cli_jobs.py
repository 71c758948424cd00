"""The queue's commands: `hiagent-host worker` and the async install with a progress display.

`cmd_install_async` talks to the running server over HTTP (stdlib urllib): it submits
`InstallPackageAsync`, polls `GetInstallPackageAsyncStatus` and shows the job's status,
phase and download bytes on stderr until the job ends; then it prints the installed record
as `install` does (text, or JSON with `--json`), read from the package store this
configuration names (a server elsewhere: the job's brief instead). Ctrl-C cancels the job.
Exit codes: 0 finished, 1 failed/stopped/error, 2 configuration error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import anyio
import msgspec

from hiagent_host import logs
from hiagent_host.cli_exit import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from hiagent_host.cli_output import ProgressLine, add_json_option, render_record
from hiagent_host.cluster import ClusterNode, coordinator_for, new_node_id
from hiagent_host.config import Config, config_secrets, load_config, read_api_keys
from hiagent_host.errors import HostError
from hiagent_host.jobs import run_worker
from hiagent_host.packages import PackageManager

# One HTTP request to the server may take this long (a cancel waits for the job to stop).
HTTP_TIMEOUT_S: Final = 30.0
# How often the progress display asks for the job's status.
POLL_INTERVAL_S: Final = 0.5
# An API key for the server, when it has any configured (never a command-line flag: `ps`).
API_KEY_ENV: Final = "HIAGENT_API_KEY"
# Exit codes, as `hiagent-host` uses them.
TERMINAL: Final = frozenset({"finished", "failed", "stopped"})


def add_arguments(subparsers: Any) -> None:
    """Add `worker` and `install-async` to the `hiagent-host` subcommands."""
    worker = subparsers.add_parser(
        "worker",
        help="run a queue worker for [queue] backend = redis (SIGTERM/SIGINT stop it)",
        description="Run arq installs from the Redis queue until SIGTERM or SIGINT.",
    )
    _config_option(worker)
    add_json_option(worker, help="log JSON lines (overrides [logging] json)")
    worker.set_defaults(func=cmd_worker)

    install = subparsers.add_parser(
        "install-async",
        help="install a plugin wheel through the running server's queue, showing progress",
        description="Submit InstallPackageAsync to the running server and follow the job.",
    )
    install.add_argument("source", help="a wheel path, or a file://, http:// or https:// URI")
    add_json_option(install, help="print the installed record (and errors) as JSON")
    add_install_async_arguments(install)
    install.set_defaults(func=cmd_install_async)


def add_install_async_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `cmd_install_async` reads (`install --async` may reuse them)."""
    _config_option(parser)
    add_once(parser, "--filename", help="the wheel's file name (default: from the source)")
    add_once(parser, "--force", action="store_true", help="replace an installed version")
    parser.add_argument(
        "--server", help="the server's base URL (default: from [server] host and port)"
    )
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=None,
        help="give up waiting after this many seconds (the job keeps running)",
    )


def _config_option(parser: argparse.ArgumentParser) -> None:
    add_once(parser, "--config", default=argparse.SUPPRESS, help="path to runtime.toml")


def add_once(parser: argparse.ArgumentParser, flag: str, **options: Any) -> None:
    """`parser.add_argument(flag, **options)` unless the parser has `flag` already (another
    command shares this parser): argparse refuses a second one with `ArgumentError`."""
    try:
        parser.add_argument(flag, **options)
    except argparse.ArgumentError:
        pass  # the parser's own option stands


def _load(args: argparse.Namespace) -> Config:
    return load_config(getattr(args, "config", None))


# ---- worker ---------------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace) -> int:
    """`hiagent-host worker`: serve the Redis queue until SIGTERM/SIGINT."""
    try:
        config = _load(args)
        keys = read_api_keys(config)
    except HostError as exc:
        print(f"hiagent-host worker: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    if config.queue.backend != "redis":
        print(
            'hiagent-host worker: needs [queue] backend = "redis" '
            f"(the {config.queue.backend} backend runs installs inside `hiagent-host serve`)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if getattr(args, "json", False):
        as_json = msgspec.structs.replace(config.logging, json=True)
        config = msgspec.structs.replace(config, logging=as_json)
    logs.configure(config.logging, keys=keys | config_secrets(config))
    anyio.run(_worker_node, config, backend="asyncio")
    return EXIT_OK


async def _worker_node(config: Config) -> None:
    """The queue worker as a node of the cluster: its installs take the cluster lock and are
    announced, and it drops what it built of versions replaced or deleted elsewhere."""
    node_id = new_node_id()
    manager = PackageManager(config, coordinator=coordinator_for(config, node_id))
    await anyio.to_thread.run_sync(manager.recover)  # what a killed install left behind
    async with ClusterNode(config, manager, node_id=node_id, role="worker"):
        await run_worker(config, installer=manager)


# ---- install --async ------------------------------------------------------------------


class ApiError(Exception):
    """The server answered with an error envelope, or could not be reached."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Client:
    """The few /v1 calls the progress display needs."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r})"

    def call(self, route: str, body: dict[str, Any]) -> Any:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(
            f"{self.base_url}/v1/{route}",
            data=json.dumps(body).encode(),
            headers=headers,
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                envelope = json.load(response)
        except urllib.error.HTTPError as exc:
            try:
                envelope = json.load(exc)
            except ValueError:
                raise ApiError(f"HTTP{exc.code}", exc.reason) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError("ServerUnreachable", f"{self.base_url}: {reason}") from exc
        error = envelope.get("error") if isinstance(envelope, dict) else None
        if error:
            raise ApiError(str(error.get("code")), str(error.get("message")))
        return envelope.get("data") if isinstance(envelope, dict) else None


def source_to_uri(source: str, filename: str | None = None) -> tuple[str, str]:
    """(uri, filename) for a wheel path or a URI given on the command line."""
    if "://" in source:
        return source, filename or unquote(urlsplit(source).path.rstrip("/").rpartition("/")[2])
    path = Path(source).expanduser().resolve()
    return path.as_uri(), filename or path.name


def _server_url(config: Config) -> str:
    host = config.server.host
    if host in {"0.0.0.0", "::", ""}:  # a wildcard bind is reached on loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.server.port}"


def _api_key(config: Config) -> str | None:
    if key := os.environ.get(API_KEY_ENV):
        return key
    try:
        keys = sorted(read_api_keys(config))
    except HostError:
        return None
    return keys[0] if keys else None


def _print_installed(config: Config, brief: dict[str, Any], as_json: bool) -> None:
    """The installed record as `install` prints it; the job's brief if it is not local."""
    try:
        record = PackageManager(config).get(str(brief.get("name")), str(brief.get("version")))
    except HostError:
        record = None
    if record is None:
        print(
            f"hiagent-host: the record is not in this configuration's package store "
            f"({config.paths.extensions_dir}); the job's summary follows",
            file=sys.stderr,
        )
        print(json.dumps(brief, ensure_ascii=False, indent=2 if as_json else None))
        return
    data = msgspec.to_builtins(record)
    print(json.dumps(data, ensure_ascii=False, indent=2) if as_json else render_record(data))


def cmd_install_async(args: argparse.Namespace) -> int:
    """Install through the server's queue; show the phase on stderr until the job ends."""
    err = sys.stderr
    try:
        config = _load(args)
    except HostError as exc:
        print(f"hiagent-host: {exc.code}: {exc.message}", file=err)
        return EXIT_USAGE
    uri, filename = source_to_uri(args.source, args.filename)
    client = Client(args.server or _server_url(config), _api_key(config))
    body = {"uri": uri, "filename": filename, "force": bool(args.force)}
    try:
        job_id = client.call("InstallPackageAsync", body)["job_id"]
    except ApiError as exc:
        print(f"hiagent-host: cannot submit the install: {exc}", file=err)
        return EXIT_FAILED
    print(f"job {job_id}", file=err)
    progress = ProgressLine(err)
    deadline = None if args.timeout_s is None else time.monotonic() + args.timeout_s
    try:
        while True:
            info = client.call("GetInstallPackageAsyncStatus", {"job_id": job_id})
            status = str(info.get("status"))
            if info.get("downloaded_bytes") is not None:
                progress.bytes(info["downloaded_bytes"], info.get("download_size_bytes"))
            progress.show(status, info.get("phase"))
            if status in TERMINAL:
                break
            if deadline is not None and time.monotonic() > deadline:
                progress.done()
                print(f"hiagent-host: still {status} after {args.timeout_s:g}s", file=err)
                return EXIT_FAILED
            time.sleep(POLL_INTERVAL_S)
    except KeyboardInterrupt:
        progress.done()
        print(f"hiagent-host: cancelling job {job_id}", file=err)
        try:
            client.call("CancelInstallPackage", {"job_id": job_id})
        except ApiError as exc:
            print(f"hiagent-host: cancel failed: {exc}", file=err)
        return EXIT_INTERRUPTED
    except ApiError as exc:
        progress.done()
        print(f"hiagent-host: lost track of job {job_id}: {exc}", file=err)
        return EXIT_FAILED
    progress.done()
    if status == "finished":
        print(f"finished: job {job_id}", file=err)
        _print_installed(config, info.get("data") or {}, bool(getattr(args, "json", False)))
        return EXIT_OK
    print(f"{status}: {info.get('reason')}", file=err)
    return EXIT_FAILED
