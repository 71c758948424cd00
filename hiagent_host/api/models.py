"""The wire shapes of /v1: request bodies and response data as msgspec Structs.

Request Structs decode bodies (unknown keys ignored, missing or mistyped keys named in the
422); response Structs encode data and, with the request Structs, generate /openapi.json.
Field order is the order of the JSON on the wire.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec

from hiagent_host.packages.names import MAX_FILENAME_CHARS, MAX_NAME_CHARS, MAX_VERSION_CHARS

MAX_URI_CHARS: Final = 8192
MAX_JOB_ID_CHARS: Final = 64

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
# Caps on what callers name things with: absurd lengths are a 422 naming the field.
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_CHARS)]
VersionText = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_VERSION_CHARS)]
FileName = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_FILENAME_CHARS)]
Uri = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URI_CHARS)]
JobIdText = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_JOB_ID_CHARS)]
TimeoutS = Annotated[
    float,
    msgspec.Meta(
        gt=0, description="Deadline in seconds; the server caps it at pool.max_call_timeout_s."
    ),
]


# ---- request bodies --------------------------------------------------------------------


class Empty(msgspec.Struct):
    """A body with no parameters (`{}`; an empty body is accepted too)."""


class InstallPackage(msgspec.Struct, kw_only=True):
    uri: Uri
    filename: FileName
    force: bool = True


class ReadPackageMetadata(msgspec.Struct, kw_only=True):
    uri: Uri
    filename: FileName


class InstallPackageAsync(msgspec.Struct, kw_only=True):
    uri: Uri
    filename: FileName
    force: bool = False


class JobRef(msgspec.Struct, kw_only=True):
    job_id: JobIdText


class PackageRef(msgspec.Struct, kw_only=True):
    pkg: Name
    version: VersionText


class PluginRef(msgspec.Struct, kw_only=True):
    pkg: Name
    version: VersionText
    plugin: Name


class RunPluginTool(msgspec.Struct, kw_only=True):
    pkg: Name
    version: VersionText
    plugin: Name
    tool: Name
    input: dict[str, Any] | None = None
    cfg: dict[str, Any] | None = None
    stream: bool = False
    timeout_s: TimeoutS | None = None


class RunPluginValidate(msgspec.Struct, kw_only=True):
    pkg: Name
    version: VersionText
    plugin: Name
    cfg: dict[str, Any] | None = None


class AdapterQuery(msgspec.Struct, kw_only=True):
    """The query string of RunPluginToolAdapterRuntime (the body is the tool input)."""

    pkg: Name
    version: VersionText
    plugin: Name
    tool: Name
    timeout_s: TimeoutS | None = None


# ---- response data ---------------------------------------------------------------------


class ErrorObject(msgspec.Struct):
    code: str
    message: str
    data: Any
    http_code: int


class Labels(msgspec.Struct):
    name_en: str | None = None
    name_zh_hans: str | None = None
    name_zh_hant: str | None = None
    description_en: str | None = None
    description_zh_hans: str | None = None
    description_zh_hant: str | None = None


class PluginPackageInfo(msgspec.Struct):
    name: str = ""
    version: str = ""


class ToolMetadata(msgspec.Struct, kw_only=True):
    name: str
    description: str = ""
    labels: Labels | None = None
    input_schema: dict[str, Any] = {}
    output_schema: dict[str, Any] = {}
    func_name: str | None = None
    stream_func_name: str | None = None
    runtime_features: list[str] = []


class Metadata(msgspec.Struct, kw_only=True):
    """One plugin (entry point), as the SDK describes it (plugin-sdk.md)."""

    meta_version: str = "v1"
    name: str
    category: str = ""
    description: str = ""
    icon: str = ""
    metadata_path: str = ""
    labels: Labels | None = None
    config_schema: dict[str, Any] = {}
    package_info: PluginPackageInfo | None = None
    tools: dict[str, ToolMetadata] = {}


class PackageMetaBrief(msgspec.Struct):
    name: str
    version: str
    uri: str
    filename: str


class PackageMetaBriefWithEntry(msgspec.Struct):
    name: str
    version: str
    uri: str
    filename: str
    plugins: list[str]


class PackageMeta(msgspec.Struct):
    name: str
    version: str
    uri: str
    filename: str
    plugins: list[Metadata]


class JobId(msgspec.Struct):
    job_id: str


class JobStatus(msgspec.Struct):
    status: str
    reason: str | None
    data: PackageMetaBrief | None
    phase: str | None = None


class PluginIcon(msgspec.Struct):
    filename: str
    content: str


class InstalledPackage(msgspec.Struct):
    name: str
    version: str
    uri: str
    filename: str
    plugins: list[str]
    installed_at: str
    venv_path: str
    disk_size_bytes: int


class ProcessInfo(msgspec.Struct):
    pkg: str
    version: str
    pid: int | None
    state: str
    uptime_s: float
    calls_in_flight: int
    calls_total: int
    restarts: int
    rss_bytes: int | None
    last_exit_reason: str | None
    replica: int
    build: str  # the build directory the process runs from
    node: str  # the node (API server process) it belongs to


class Health(msgspec.Struct):
    status: str
    version: str
    uptime_s: float
    pool: dict[str, Any]
    queue: dict[str, Any]
    cluster: dict[str, Any]


class Pong(msgspec.Struct):
    message: str = "pong"
