"""The route table: every path, its handler, and the Structs its request and response use.

One table feeds both the Starlette router and /openapi.json, so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from starlette.routing import Route

from hiagent_host.api import console, jobs, models, packages, system, tools
from hiagent_host.api.endpoints import Endpoint
from hiagent_host.packages.names import MAX_NAME_CHARS, MAX_VERSION_CHARS
from hiagent_host.pool import ProcessInfo

# The tag of the operations the router tries first (see `starlette_routes`).
HOT_TAG: Final = "tools"


@dataclass(frozen=True)
class Operation:
    path: str
    endpoint: Endpoint
    summary: str
    body: Any = None  # the request Struct (None: no JSON body)
    returns: Any = None  # the envelope's `data` type (or the body's, without an envelope)
    envelope: bool = True  # False: the body is `returns` itself (or not JSON at all)
    method: str = "POST"
    tag: str = "packages"
    # Reachable without an API key: liveness, readiness and scraping. /docs is a static page
    # with no data in it (a browser cannot send a bearer header to open it); the page asks for
    # the key and sends it with every request it makes, starting with /openapi.json.
    public: bool = False
    streams: bool = False  # may answer text/event-stream
    media_type: str = "application/json"
    extra: dict[str, Any] = field(default_factory=dict)  # raw OpenAPI operation fields


def _v1(name: str, handler: Endpoint, body: Any, returns: Any, tag: str, **kw: Any) -> Operation:
    summary = (handler.__doc__ or name).strip().splitlines()[0]
    return Operation(f"/v1/{name}", handler, summary, body, returns, tag=tag, **kw)


ADAPTER_PARAMETERS = [
    *(
        {
            "name": name,
            "in": "query",
            "required": True,
            "description": description,
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": longest,
                "examples": [example],
            },
        }
        for name, description, example, longest in (
            (
                "pkg",
                "Distribution name, any PEP 503 spelling.",
                "hiagent-plugin-clock",
                MAX_NAME_CHARS,
            ),
            ("version", "Version, any PEP 440-equal spelling.", "0.1.0", MAX_VERSION_CHARS),
            ("plugin", "The plugin's entry-point name.", "时间工具", MAX_NAME_CHARS),
            ("tool", "The tool's name.", "convert_time", MAX_NAME_CHARS),
        )
    ),
    {
        "name": "timeout_s",
        "in": "query",
        "required": False,
        "description": "Deadline in seconds (capped at pool.max_call_timeout_s).",
        "schema": {"type": "number", "exclusiveMinimum": 0},
    },
    {
        "name": "cfg",
        "in": "header",
        "required": False,
        "description": "The plugin config as a JSON object (UTF-8).",
        "schema": {"type": "string"},
    },
]

UPLOAD_PARAMETERS = [
    {
        "name": "filename",
        "in": "query",
        "required": True,
        "description": "The wheel's file name, e.g. `hiagent_plugin_clock-0.1.0-py3-none-any.whl`.",
        "schema": {"type": "string", "minLength": 1},
    },
    {
        "name": "force",
        "in": "query",
        "required": False,
        "description": "Replace the version if it is installed.",
        "schema": {"type": "boolean", "default": False},
    },
]
UPLOAD_BODY = {
    "required": True,
    "description": "The wheel file itself (at most `packages.max_download_bytes`).",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}

OPERATIONS: Sequence[Operation] = (
    Operation(
        "/ping",
        system.ping,
        "Liveness probe.",
        None,
        models.Pong,
        envelope=False,
        method="GET",
        tag="host",
        public=True,
    ),
    _v1(
        "InstallPackage",
        packages.install_package,
        models.InstallPackage,
        models.PackageMeta,
        "packages",
    ),
    _v1(
        "ReadPackageMetadata",
        packages.read_package_metadata,
        models.ReadPackageMetadata,
        models.PackageMetaBriefWithEntry,
        "packages",
    ),
    _v1(
        "InstallPackageAsync",
        jobs.install_package_async,
        models.InstallPackageAsync,
        models.JobId,
        "jobs",
    ),
    _v1(
        "GetInstallPackageAsyncStatus",
        jobs.get_install_status,
        models.JobRef,
        models.JobStatus,
        "jobs",
    ),
    _v1("CancelInstallPackage", jobs.cancel_install, models.JobRef, None, "jobs"),
    _v1("ListJobs", jobs.list_jobs, models.ListJobs, list[models.JobSummary], "jobs"),
    _v1("RetryInstallPackage", jobs.retry_install, models.JobRef, models.JobId | None, "jobs"),
    _v1("DeletePackage", packages.delete_package, models.PackageRef, None, "packages"),
    _v1(
        "GetPackageMetadata",
        packages.get_package_metadata,
        models.PackageRef,
        list[models.Metadata],
        "packages",
    ),
    _v1("GetPluginIcon", packages.get_plugin_icon, models.PluginRef, models.PluginIcon, "packages"),
    _v1(
        "UploadPackage",
        packages.upload_package,
        None,
        models.JobId,
        "jobs",
        extra={"parameters": UPLOAD_PARAMETERS, "requestBody": UPLOAD_BODY},
    ),
    _v1("GetPackageLog", packages.get_package_log, models.GetPackageLog, models.PackageLog, "host"),
    _v1("RunPluginTool", tools.run_plugin_tool, models.RunPluginTool, Any, "tools", streams=True),
    _v1(
        "RunPluginToolAdapterRuntime",
        tools.run_plugin_tool_adapter,
        dict[str, Any],
        Any,
        "tools",
        streams=True,
        extra={"parameters": ADAPTER_PARAMETERS},
    ),
    _v1("RunPluginValidate", tools.run_plugin_validate, models.RunPluginValidate, None, "tools"),
    Operation(
        "/v1/health",
        system.health,
        "Readiness: ok (200) or degraded (503).",
        None,
        models.Health,
        method="GET",
        tag="host",
        public=True,
    ),
    _v1(
        "ListPackages", packages.list_packages, models.Empty, list[models.InstalledPackage], "host"
    ),
    _v1("ListProcesses", system.list_processes, models.Empty, list[ProcessInfo], "host"),
    Operation(
        "/metrics",
        system.metrics,
        "Prometheus metrics (text format).",
        envelope=False,
        method="GET",
        tag="host",
        public=True,
        media_type="text/plain",
    ),
    Operation(
        "/openapi.json",
        system.openapi,
        "This document.",
        None,
        dict[str, Any],
        envelope=False,
        method="GET",
        tag="host",
    ),
    Operation(
        "/",
        console.root,
        "Redirects to the console.",
        envelope=False,
        method="GET",
        tag="host",
        public=True,
        media_type="text/html",
        extra={"responses": {"307": {"description": "To /console."}}},
    ),
    Operation(
        console.CONSOLE_PATH,
        console.page,
        "The web console (served offline; data through /v1 with the API key).",
        envelope=False,
        method="GET",
        tag="host",
        public=True,
        media_type="text/html",
    ),
    Operation(
        console.SCRIPT_PATH,
        console.script,
        "The console's script.",
        envelope=False,
        method="GET",
        tag="host",
        public=True,
        media_type="text/javascript",
    ),
    Operation(
        "/docs",
        system.docs,
        "Interactive documentation (served offline).",
        envelope=False,
        method="GET",
        tag="host",
        public=True,
        media_type="text/html",
    ),
)


def public_paths(operations: Sequence[Operation] = OPERATIONS) -> frozenset[str]:
    """The paths reachable without an API key."""
    return frozenset(op.path for op in operations if op.public)


def starlette_routes(operations: Sequence[Operation] = OPERATIONS) -> list[Route]:
    """The router's routes; the tool calls first, as the router tries routes in order and
    they are the calls made most (every path is a distinct literal: order changes nothing
    else)."""
    ordered = sorted(operations, key=lambda op: op.tag != HOT_TAG)
    return [
        Route(op.path, op.endpoint, methods=[op.method], include_in_schema=False) for op in ordered
    ]
