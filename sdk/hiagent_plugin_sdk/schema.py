"""The wire shapes the SDK hands the host: plugin metadata, SSE items and the error envelope.

Field order in these models is the order of the JSON the host serves; do not reorder.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

META_VERSION = "v1"


class Labels(BaseModel):
    """Display names and descriptions per language; null where none was given."""

    name_en: str | None = None
    name_zh_hans: str | None = None
    name_zh_hant: str | None = None
    description_en: str | None = None
    description_zh_hans: str | None = None
    description_zh_hant: str | None = None


class PackageInfo(BaseModel):
    """The plugin's top-level import package and the installed distribution's version."""

    name: str = ""
    version: str = ""


class ToolMetadata(BaseModel):
    """One tool of a plugin: its schemas and the methods that implement it."""

    name: str
    description: str = ""
    labels: Labels = Field(default_factory=Labels)
    input_schema: dict[str, Any] = Field(default_factory=dict)
    output_schema: dict[str, Any] = Field(default_factory=dict)
    func_name: str | None = None
    stream_func_name: str | None = None
    runtime_features: list[str] = Field(default_factory=list)


class Metadata(BaseModel):
    """Everything a caller needs to know about one plugin (one entry point)."""

    meta_version: str = META_VERSION
    name: str
    category: str = ""
    description: str = ""
    icon: str = ""
    metadata_path: str = ""
    labels: Labels = Field(default_factory=Labels)
    config_schema: dict[str, Any] = Field(default_factory=dict)
    package_info: PackageInfo = Field(default_factory=PackageInfo)
    tools: dict[str, ToolMetadata] = Field(default_factory=dict)


class ServerSentEvent(BaseModel):
    """One item a stream function may yield to control the SSE fields; nulls are not sent."""

    event: str | None = None
    data: str | None = None
    id: str | None = None
    retry: int | None = None

    @model_serializer(mode="wrap")
    def _drop_nulls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        return {key: value for key, value in dumped.items() if value is not None}


# The error object of the host's response envelope. No docstring on purpose: it would become
# a "description" inside every tool's output_schema.
class HttpError(BaseModel):
    code: str
    message: str
    data: Any = None
    http_code: int = 500


class HttpException(Exception):
    """Raise this (from a plugin or the SDK) to reach the HTTP caller with exactly these fields.

    `data` must be JSON-serialisable (or None); `http_code` becomes the response status.
    """

    def __init__(self, code: str, message: str, data: Any = None, http_code: int = 500) -> None:
        super().__init__(code, message, data, http_code)
        self.code = code
        self.message = message
        self.data = data
        self.http_code = http_code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_error(self) -> HttpError:
        """This exception as the envelope's error object."""
        return HttpError(
            code=self.code, message=self.message, data=self.data, http_code=self.http_code
        )
