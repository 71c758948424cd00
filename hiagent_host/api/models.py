"""The wire shapes of /v1: request bodies and response data as msgspec Structs.

Request Structs decode bodies (unknown keys ignored, missing or mistyped keys named in the
422); response Structs encode data and, with the request Structs, generate /openapi.json.
Field order is the order of the JSON on the wire. Every field carries a description (and the
request fields a realistic example), which /docs shows.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec

from hiagent_host.packages.names import MAX_FILENAME_CHARS, MAX_NAME_CHARS, MAX_VERSION_CHARS

MAX_URI_CHARS: Final = 8192
MAX_JOB_ID_CHARS: Final = 64

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


M = msgspec.Meta
WHEEL: Final = "hiagent_plugin_clock-0.1.0-py3-none-any.whl"
# Caps on what callers name things with: absurd lengths are a 422 naming the field.
Pkg = Annotated[
    str,
    M(min_length=1, max_length=MAX_NAME_CHARS, description="Distribution name, any PEP 503 "
      "spelling.", examples=["hiagent-plugin-clock"]),
]  # fmt: skip
Ver = Annotated[
    str,
    M(min_length=1, max_length=MAX_VERSION_CHARS,
      description="Version, any PEP 440-equal spelling.", examples=["0.1.0"]),
]  # fmt: skip
PluginName = Annotated[
    str,
    M(min_length=1, max_length=MAX_NAME_CHARS,
      description="The plugin's entry-point name (group hiagent.plugins).", examples=["时间工具"]),
]  # fmt: skip
ToolName = Annotated[
    str,
    M(min_length=1, max_length=MAX_NAME_CHARS, description="The tool's name.",
      examples=["convert_time"]),
]  # fmt: skip
Uri = Annotated[
    str,
    M(min_length=1, max_length=MAX_URI_CHARS,
      description="Where the wheel is: file:// (a path on the server), http:// or https://.",
      examples=[f"https://plugins.example.com/{WHEEL}"]),
]  # fmt: skip
Filename = Annotated[
    str,
    M(min_length=1, max_length=MAX_FILENAME_CHARS,
      description="The wheel's file name (no path separator).", examples=[WHEEL]),
]  # fmt: skip
JobIdText = Annotated[
    str,
    M(min_length=1, max_length=MAX_JOB_ID_CHARS, description="The id InstallPackageAsync returned.",
      examples=["5c3e0d1b9a8f4e2d8c7b6a5f4e3d2c1b"]),
]  # fmt: skip
Cfg = Annotated[
    dict[str, Any] | None,
    M(description="The plugin's config (its config_schema), e.g. {\"api_key\": \"sk-…\"}; "
      "secret values never reach a log."),
]  # fmt: skip
ToolInput = Annotated[
    dict[str, Any] | None,
    M(description="The tool's input (its input_schema); null means {}.",
      examples=[{"time": "2024-05-01T12:00:00+00:00", "timezone": "Asia/Shanghai"}]),
]  # fmt: skip
Stream = Annotated[
    bool, M(description="Answer with server-sent events, one per item the tool yields.")
]
ForceTrue = Annotated[bool, M(description="Replace the version if it is installed.")]
TimeoutS = Annotated[
    float,
    M(gt=0, description="Deadline in seconds; the server caps it at pool.max_call_timeout_s.",
      examples=[30.0]),
]  # fmt: skip
OptionalTimeoutS = Annotated[
    TimeoutS | None, M(description="Deadline in seconds (default pool.call_timeout_s).")
]
MaxLines = Annotated[int, M(ge=1, le=5000, description="At most this many lines.", examples=[200])]


# ---- request bodies --------------------------------------------------------------------


class Empty(msgspec.Struct):
    """A body with no parameters (`{}`; an empty body is accepted too)."""


class InstallPackage(msgspec.Struct, kw_only=True):
    """Install a wheel and wait for it."""

    uri: Uri
    filename: Filename
    force: ForceTrue = True


class ReadPackageMetadata(msgspec.Struct, kw_only=True):
    """Read a wheel without installing it."""

    uri: Uri
    filename: Filename


class InstallPackageAsync(msgspec.Struct, kw_only=True):
    """Queue an install."""

    uri: Uri
    filename: Filename
    force: ForceTrue = False


class JobRef(msgspec.Struct, kw_only=True):
    """One install job."""

    job_id: JobIdText


class PackageRef(msgspec.Struct, kw_only=True):
    """One installed package version."""

    pkg: Pkg
    version: Ver


class PluginRef(msgspec.Struct, kw_only=True):
    """One plugin of an installed package version."""

    pkg: Pkg
    version: Ver
    plugin: PluginName


class RunPluginTool(msgspec.Struct, kw_only=True):
    """One tool call."""

    pkg: Pkg
    version: Ver
    plugin: PluginName
    tool: ToolName
    input: ToolInput = None
    cfg: Cfg = None
    stream: Stream = False
    timeout_s: OptionalTimeoutS = None


class RunPluginValidate(msgspec.Struct, kw_only=True):
    """A config for the plugin to check."""

    pkg: Pkg
    version: Ver
    plugin: PluginName
    cfg: Cfg = None


class GetPackageLog(msgspec.Struct, kw_only=True):
    """Which package's log, and how much of its end."""

    pkg: Pkg
    version: Ver
    max_lines: MaxLines = 200


class ListJobs(msgspec.Struct, kw_only=True):
    """How many jobs to list."""

    limit: Annotated[
        int, M(ge=1, le=1000, description="At most this many, newest first.", examples=[50])
    ] = 100


class UploadQuery(msgspec.Struct, kw_only=True):
    """The query string of UploadPackage (the body is the wheel file itself)."""

    filename: Filename
    force: bool = False


class AdapterQuery(msgspec.Struct, kw_only=True):
    """The query string of RunPluginToolAdapterRuntime (the body is the tool input)."""

    pkg: Pkg
    version: Ver
    plugin: PluginName
    tool: ToolName
    timeout_s: OptionalTimeoutS = None


# ---- response data ---------------------------------------------------------------------


class ErrorObject(msgspec.Struct):
    code: Annotated[str, M(description="Stable identifier clients branch on (docs/http-api.md).")]
    message: Annotated[str, M(description="For people.")]
    data: Annotated[
        Any, M(description="Details (the field, the problems, an output tail), or null.")
    ]
    http_code: Annotated[int, M(description="The HTTP status of this response.")]


class Labels(msgspec.Struct):
    name_en: Annotated[str | None, M(description="English name.")] = None
    name_zh_hans: Annotated[str | None, M(description="Simplified Chinese name.")] = None
    name_zh_hant: Annotated[str | None, M(description="Traditional Chinese name.")] = None
    description_en: Annotated[str | None, M(description="English description.")] = None
    description_zh_hans: Annotated[str | None, M(description="Simplified Chinese description.")] = (
        None
    )
    description_zh_hant: Annotated[
        str | None, M(description="Traditional Chinese description.")
    ] = None


class PluginPackageInfo(msgspec.Struct):
    name: Annotated[str, M(description="The module's package name.")] = ""
    version: Annotated[str, M(description="The package version.")] = ""


class ToolMetadata(msgspec.Struct, kw_only=True):
    name: Annotated[str, M(description="The tool's name (what callers pass as tool).")]
    description: Annotated[str, M(description="What the tool does (its docstring).")] = ""
    labels: Annotated[Labels | None, M(description="Names and descriptions by language.")] = None
    input_schema: Annotated[dict[str, Any], M(description="JSON Schema of the tool's input.")] = {}
    output_schema: Annotated[
        dict[str, Any], M(description="JSON Schema of the tool's result.")
    ] = {}
    func_name: Annotated[str | None, M(description="The method that implements the tool.")] = None
    stream_func_name: Annotated[
        str | None, M(description="The method that streams it, when it can stream.")
    ] = None
    runtime_features: Annotated[list[str], M(description="e.g. stream, agent_intention.")] = []


class Metadata(msgspec.Struct, kw_only=True):
    """One plugin (entry point), as the SDK describes it (plugin-sdk.md)."""

    meta_version: Annotated[str, M(description="Metadata format version.")] = "v1"
    name: Annotated[str, M(description="The plugin's name (cn_name of set_meta).")]
    category: Annotated[str, M(description="The plugin's category.")] = ""
    description: Annotated[str, M(description="What the plugin does.")] = ""
    icon: Annotated[str, M(description="URI of the plugin's icon (GetPluginIcon serves it).")] = ""
    metadata_path: Annotated[
        str, M(description="The packaged metadata file, when there is one.")
    ] = ""
    labels: Annotated[Labels | None, M(description="Names and descriptions by language.")] = None
    config_schema: Annotated[
        dict[str, Any],
        M(description="JSON Schema of the plugin's config; secret fields carry x-hiagent-secret."),
    ] = {}
    package_info: Annotated[
        PluginPackageInfo | None, M(description="The package the plugin comes from.")
    ] = None
    tools: Annotated[dict[str, ToolMetadata], M(description="The plugin's tools by name.")] = {}


class PackageMetaBrief(msgspec.Struct):
    name: Annotated[str, M(description="Distribution name, as the wheel's METADATA spells it.")]
    version: Annotated[str, M(description="Version, as the wheel's METADATA spells it.")]
    uri: Annotated[str, M(description="The uri it was installed (or read) from.")]
    filename: Annotated[str, M(description="The wheel's file name.")]


class PackageMetaBriefWithEntry(msgspec.Struct):
    name: Annotated[str, M(description="Distribution name, as the wheel's METADATA spells it.")]
    version: Annotated[str, M(description="Version, as the wheel's METADATA spells it.")]
    uri: Annotated[str, M(description="The uri it was installed (or read) from.")]
    filename: Annotated[str, M(description="The wheel's file name.")]
    plugins: Annotated[list[str], M(description="Entry-point names of its plugins.")]


class PackageMeta(msgspec.Struct):
    name: Annotated[str, M(description="Distribution name, as the wheel's METADATA spells it.")]
    version: Annotated[str, M(description="Version, as the wheel's METADATA spells it.")]
    uri: Annotated[str, M(description="The uri it was installed (or read) from.")]
    filename: Annotated[str, M(description="The wheel's file name.")]
    plugins: Annotated[list[Metadata], M(description="Every plugin's metadata.")]


class JobId(msgspec.Struct):
    job_id: Annotated[
        str,
        M(
            description="Pass it to GetInstallPackageAsyncStatus, CancelInstallPackage or "
            "RetryInstallPackage."
        ),
    ]


class JobStatus(msgspec.Struct):
    status: Annotated[str, M(description="queued, deferred, started, finished, failed or stopped.")]
    reason: Annotated[str | None, M(description='On failed or stopped: "<code>: <message>".')]
    data: Annotated[PackageMetaBrief | None, M(description="On finished: the installed package.")]
    phase: Annotated[
        str | None,
        M(
            description="While started: downloading, validating, creating venv, "
            "installing dependencies, probing (or cancelling)."
        ),
    ] = None
    downloaded_bytes: Annotated[
        int | None, M(description="While downloading: bytes of the wheel fetched so far.")
    ] = None
    download_size_bytes: Annotated[
        int | None, M(description="While downloading: the wheel's size, when known.")
    ] = None


class JobSummary(msgspec.Struct):
    """One install job, as ListJobs reports it."""

    job_id: Annotated[str, M(description="The job's id.")]
    status: Annotated[str, M(description="queued, deferred, started, finished, failed or stopped.")]
    reason: Annotated[str | None, M(description='On failed or stopped: "<code>: <message>".')]
    data: Annotated[PackageMetaBrief | None, M(description="On finished: the installed package.")]
    phase: Annotated[str | None, M(description="While started: what it is doing.")]
    uri: Annotated[str, M(description="The wheel's uri.")]
    filename: Annotated[str, M(description="The wheel's file name.")]
    force: Annotated[bool, M(description="Whether it replaces an installed version.")]
    enqueued_at: Annotated[str, M(description="When it was queued (RFC 3339, UTC).")]
    started_at: Annotated[str | None, M(description="When its last run started.")]
    finished_at: Annotated[str | None, M(description="When it ended.")]
    attempts: Annotated[int, M(description="How many times its install started.")]
    downloaded_bytes: Annotated[int | None, M(description="While downloading: bytes so far.")]
    download_size_bytes: Annotated[int | None, M(description="... of this many, when known.")]


class PackageLog(msgspec.Struct):
    lines: Annotated[list[str], M(description="The last lines, oldest first, secrets masked.")]
    truncated: Annotated[bool, M(description="Whether the log holds more before them.")]


class PluginIcon(msgspec.Struct):
    filename: Annotated[str, M(description="icon.<ext> (the extension tells the image type).")]
    content: Annotated[str, M(description="The file, base64-encoded.")]


class InstalledPackage(msgspec.Struct):
    name: Annotated[str, M(description="Distribution name, as the wheel's METADATA spells it.")]
    version: Annotated[str, M(description="Version, as the wheel's METADATA spells it.")]
    uri: Annotated[str, M(description="The uri it was installed (or read) from.")]
    filename: Annotated[str, M(description="The wheel's file name.")]
    plugins: Annotated[list[str], M(description="Entry-point names of its plugins.")]
    installed_at: Annotated[str, M(description="When (RFC 3339, UTC).")]
    venv_path: Annotated[str, M(description="The version's virtualenv.")]
    disk_size_bytes: Annotated[int, M(description="Size of the virtualenv on disk.")]
    wheel_sha256: Annotated[str, M(description="SHA-256 of the installed wheel.")]
    wheel_size: Annotated[int, M(description="Size of the installed wheel in bytes.")]


class Health(msgspec.Struct):
    status: Annotated[str, M(description="ok or degraded.")]
    version: Annotated[str, M(description="hiagent-host's version.")]
    uptime_s: Annotated[float, M(description="Seconds since the server started.")]
    pool: Annotated[dict[str, Any], M(description="Process pool counters.")]
    queue: Annotated[
        dict[str, Any], M(description="The install queue: backend, ok, reason, depth, workers.")
    ]
    sandbox: Annotated[dict[str, Any], M(description="The plugin sandbox: mode, active, reason.")]
    cluster: Annotated[
        dict[str, Any],
        M(description="This node: store, materialised builds, other nodes, problems."),
    ]


class Pong(msgspec.Struct):
    message: Annotated[str, M(description="Always pong.")] = "pong"
