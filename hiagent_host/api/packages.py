"""Package routes: install, upload, read a wheel's metadata, delete, describe, icon, list, log.

Installing and reading a wheel block (download, venv build, probe): they run in a worker
thread so other requests keep flowing while a package installs. An uploaded wheel is kept in
the fetch cache (same size cap as a download) and then installed like any other uri, by a job.
"""

from __future__ import annotations

import base64
import time
from functools import partial
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import anyio
from starlette.requests import Request

from hiagent_host.api import models, requests
from hiagent_host.api.endpoints import endpoint, raw_endpoint
from hiagent_host.api.middleware import annotate
from hiagent_host.api.services import Services
from hiagent_host.errors import (
    FORBIDDEN,
    ICON_NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    PLUGIN_ENTRY_NOT_FOUND,
    HostError,
    NotFound,
)
from hiagent_host.packages.names import parse_filename
from hiagent_host.packages.recovery import scratch_dir

# Icons are small images; anything larger is refused rather than base64-encoded into a reply.
MAX_ICON_BYTES: Final = 4 * 1024 * 1024
# GetPackageLog reads at most this much of the end of the log file (a tail, not an export).
LOG_TAIL_BYTES: Final = 256 * 1024
UPLOAD_NAME: Final = "upload.whl"


@endpoint(models.InstallPackage)
async def install_package(request: Request, s: Services, body: models.InstallPackage) -> Any:
    """Install a wheel (file://, http://, https://) into its own venv; replaces it when `force`."""
    annotate(request, filename=body.filename)
    start = time.perf_counter()
    install = partial(s.packages.install, body.uri, body.filename, force=body.force)
    try:
        record = await anyio.to_thread.run_sync(install)
    except HostError as exc:
        s.metrics.observe_install(exc.code, time.perf_counter() - start)
        raise
    s.metrics.observe_install("ok", time.perf_counter() - start)
    return record.meta()


@raw_endpoint
async def upload_package(request: Request, s: Services) -> Any:
    """Upload a wheel (the body; `filename` and `force` in the query) and queue its install."""
    query = requests.convert(dict(request.query_params), models.UploadQuery, where="query")
    annotate(request, filename=query.filename)
    parse_filename(query.filename)  # before reading a byte of the body
    limit = s.config.packages.max_download_bytes
    await anyio.to_thread.run_sync(s.packages.layout.ensure_roots)
    with scratch_dir(s.packages.layout.tmp_dir) as scratch:
        path = scratch / UPLOAD_NAME
        await _receive_file(request, path, limit)
        uri = await anyio.to_thread.run_sync(s.packages.store_upload, path, query.filename)
    job_id = await s.jobs.submit(uri, query.filename, query.force)
    return {"job_id": job_id}


async def _receive_file(request: Request, path: Path, limit: int) -> None:
    """The request body into `path`; 413 as soon as it passes `limit` bytes (what the client
    still sends is drained by the keep-alive middleware)."""
    too_large = HostError(
        f"the upload is larger than packages.max_download_bytes ({limit} bytes)",
        code=PAYLOAD_TOO_LARGE,
        http_status=413,
        data={"max_download_bytes": limit},
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    size = 0
    async with await anyio.open_file(path, "wb") as out:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            await out.write(chunk)
    if size == 0:
        raise requests.bad_request("the upload is empty: send the wheel file as the body")


@endpoint(models.ReadPackageMetadata)
async def read_package_metadata(
    request: Request, s: Services, body: models.ReadPackageMetadata
) -> Any:
    """Read a wheel's name, version and plugins without installing anything."""
    summary = await anyio.to_thread.run_sync(s.packages.read_metadata, body.uri, body.filename)
    return summary.brief_with_entry()


@endpoint(models.PackageRef)
async def delete_package(request: Request, s: Services, body: models.PackageRef) -> None:
    """Delete an installed package version (its processes, venv and record). Idempotent."""
    annotate(request, pkg=body.pkg, version=body.version)
    await anyio.to_thread.run_sync(s.packages.delete, body.pkg, body.version)


@endpoint(models.PackageRef)
async def get_package_metadata(request: Request, s: Services, body: models.PackageRef) -> Any:
    """The Metadata of every plugin in an installed package version."""
    record = s.packages.get(body.pkg, body.version)
    return [record.metadata[name] for name in record.plugins]


@endpoint(models.PluginRef)
async def get_plugin_icon(request: Request, s: Services, body: models.PluginRef) -> Any:
    """A plugin's icon file, base64-encoded."""
    record = s.packages.get(body.pkg, body.version)
    metadata = record.metadata.get(body.plugin)
    if metadata is None:
        raise NotFound(
            f"package {record.name} {record.version} has no plugin {body.plugin!r}",
            code=PLUGIN_ENTRY_NOT_FOUND,
            data={"plugin": body.plugin, "available": list(record.plugins)},
        )
    path = icon_path(str(metadata.get("icon") or ""), s.packages.venv_dir(record), body.plugin)
    content = await anyio.to_thread.run_sync(_read_icon, path, body.plugin)
    suffix = path.suffix.lower() or ".png"
    return {"filename": f"icon{suffix}", "content": base64.b64encode(content).decode("ascii")}


def icon_path(uri: str, venv: Path, plugin: str) -> Path:
    """The icon file a `file://` URI names, which must lie inside the package's venv."""
    if not uri:
        raise _no_icon(plugin, "the plugin declares no icon")
    parts = urlsplit(uri)
    if parts.scheme != "file":
        raise _no_icon(
            plugin, f"the icon is not a local file ({parts.scheme or 'no'} scheme)", uri=uri
        )
    path = Path(url2pathname(unquote(parts.path))).resolve()
    root = venv.resolve()
    if root != path and root not in path.parents:
        raise HostError(
            f"the icon of plugin {plugin!r} lies outside the package's environment",
            code=FORBIDDEN,
            http_status=403,
            data={"plugin": plugin},
        )
    return path


def _read_icon(path: Path, plugin: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_ICON_BYTES:
            raise _no_icon(plugin, f"the icon is larger than {MAX_ICON_BYTES} bytes")
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise _no_icon(plugin, "the icon file does not exist") from None


def _no_icon(plugin: str, reason: str, **data: str) -> NotFound:
    return NotFound(
        f"no icon for plugin {plugin!r}: {reason}",
        code=ICON_NOT_FOUND,
        data={"plugin": plugin, **data},
    )


@endpoint(models.GetPackageLog)
async def get_package_log(request: Request, s: Services, body: models.GetPackageLog) -> Any:
    """The last lines its plugin processes wrote to stderr, secrets masked."""
    record = s.packages.get(body.pkg, body.version)
    path = s.packages.log_path(record.name, record.version)
    lines, truncated = await anyio.to_thread.run_sync(_tail, path, body.max_lines)
    return {"lines": [s.redact(line) for line in lines], "truncated": truncated}


def _tail(path: Path, max_lines: int) -> tuple[list[str], bool]:
    """The last `max_lines` lines of `path` (within LOG_TAIL_BYTES); whether more came before."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            start = max(0, size - LOG_TAIL_BYTES)
            f.seek(start)
            data = f.read()
    except FileNotFoundError:
        return [], False
    lines = data.decode("utf-8", "replace").splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # the first line read is likely a piece of one
    return lines[-max_lines:], start > 0 or len(lines) > max_lines


@endpoint(models.Empty)
async def list_packages(request: Request, s: Services, body: models.Empty) -> Any:
    """Every installed package version with its plugins, install time, venv and size."""
    records = await anyio.to_thread.run_sync(s.packages.list)
    return [
        r.brief()
        | {
            "plugins": list(r.plugins),
            "installed_at": str(r.installed_at),
            "venv_path": str(r.venv_path),
            "disk_size_bytes": int(r.disk_size_bytes),
            "wheel_sha256": r.wheel_sha256,
            "wheel_size": int(r.wheel_size),
        }
        for r in records
    ]
