"""The route table: every path, its handler, and the Structs its request and response use.

One table feeds both the Starlette router and /openapi.json, so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.routing import Route

from hiagent_host.api import jobs, models, packages, system, tools
from hiagent_host.api.endpoints import Endpoint
from hiagent_host.packages.names import MAX_NAME_CHARS, MAX_VERSION_CHARS


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
    public: bool = False  # reachable without an API key
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
            "schema": {"type": "string", "minLength": 1, "maxLength": longest},
        }
        for name, longest in (
            ("pkg", MAX_NAME_CHARS),
            ("version", MAX_VERSION_CHARS),
            ("plugin", MAX_NAME_CHARS),
            ("tool", MAX_NAME_CHARS),
        )
    ),
    {
        "name": "timeout_s",
        "in": "query",
        "required": False,
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
    _v1("ListProcesses", system.list_processes, models.Empty, list[models.ProcessInfo], "host"),
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


def starlette_routes(operations: Sequence[Operation] = OPERATIONS) -> list[Route]:
    return [
        Route(op.path, op.endpoint, methods=[op.method], include_in_schema=False)
        for op in operations
    ]
