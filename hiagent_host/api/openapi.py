"""/openapi.json (OpenAPI 3.1), generated from the route table and the same msgspec Structs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Final

import msgspec

import hiagent_host
from hiagent_host.api import models
from hiagent_host.api.routes import Operation

REF: Final = "#/components/schemas/{name}"

# The statuses a /v1 route can answer with an error envelope (see docs/http-api.md).
ERROR_STATUSES: Final = {
    "400": "Malformed JSON, a bad wheel, a rejected config, a job in the wrong state.",
    "401": "Missing or invalid API key.",
    "403": "A path outside the allowed roots.",
    "404": "Unknown package, plugin, tool, icon or job.",
    "409": "Already installed.",
    "413": "Request body over server.max_body_bytes.",
    "422": "A missing or mistyped field (named in error.data.field), or invalid tool input.",
    "500": "Install failed, or an error the host did not anticipate.",
    "502": "Download failed, or the plugin process crashed.",
    "503": "Pool exhausted (see Retry-After) or queue unavailable.",
    "504": "The tool call passed its deadline.",
}


DATA: Final = "The result; null on failure."
ERROR: Final = "Null on success; on failure, what went wrong."


class ErrorEnvelope(msgspec.Struct):
    """Every /v1 failure: data is null and error says what went wrong."""

    data: Annotated[None, msgspec.Meta(description="Null on failure.")]
    error: Annotated[models.ErrorObject, msgspec.Meta(description="What went wrong.")]


def _name(op: Operation) -> str:
    return op.path.rstrip("/").rsplit("/", 1)[-1].replace(".", "_") or "root"


def _response_type(op: Operation) -> Any:
    """`<Route>Response`: the envelope with this route's `data` type (or the bare body)."""
    if not op.envelope:
        return op.returns
    data = Any if op.returns is Any else (op.returns | None if op.returns is not None else None)
    return msgspec.defstruct(
        f"{_name(op)[:1].upper()}{_name(op)[1:]}Response",
        [
            ("data", Annotated[data, msgspec.Meta(description=DATA)]),
            ("error", Annotated[models.ErrorObject | None, msgspec.Meta(description=ERROR)]),
        ],
        module=__name__,
    )


def build(operations: Sequence[Operation], *, secured: bool) -> dict[str, Any]:
    bodies = [op.body for op in operations]
    results = [_response_type(op) for op in operations]
    types = [ErrorEnvelope, *(t for t in bodies + results if t is not None)]
    refs, components = msgspec.json.schema_components(types, ref_template=REF)
    schema_of = {id(t): ref for t, ref in zip(types, refs, strict=True)}
    error_ref = schema_of[id(ErrorEnvelope)]

    paths: dict[str, Any] = {}
    for op, body, result in zip(operations, bodies, results, strict=True):
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(
            op,
            schema_of.get(id(body)),
            schema_of.get(id(result)),
            error_ref,
            secured,
        )
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "hiagent-host",
            "version": hiagent_host.__version__,
            "description": "Runs HiAgent plugin wheels in isolated processes (docs/http-api.md).",
        },
        "paths": paths,
        "components": {"schemas": components},
    }
    if secured:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document


def _operation(
    op: Operation,
    body_ref: Any,
    result_ref: Any,
    error_ref: dict[str, Any],
    secured: bool,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": _name(op),
        "summary": op.summary,
        "tags": [op.tag],
    }
    if body_ref is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body_ref}},
        }
    out.update(op.extra)
    ok: dict[str, Any] = {"description": "Success."}
    if result_ref is not None:
        ok["content"] = {op.media_type: {"schema": result_ref}}
    elif op.media_type != "application/json":
        ok["content"] = {op.media_type: {"schema": {"type": "string"}}}
    if op.streams:
        ok["content"]["text/event-stream"] = {
            "schema": {"type": "string", "description": "Server-sent events; see docs/http-api.md."}
        }
    responses: dict[str, Any] = {"200": ok}
    if op.envelope:
        for status, why in ERROR_STATUSES.items():
            responses[status] = {
                "description": why,
                "content": {"application/json": {"schema": error_ref}},
            }
        responses["default"] = {
            "description": "Any other error status a plugin reports (HttpException.http_code).",
            "content": {"application/json": {"schema": error_ref}},
        }
    elif secured and not op.public:
        responses["401"] = {
            "description": ERROR_STATUSES["401"],
            "content": {"application/json": {"schema": error_ref}},
        }
    out["responses"] = op.extra.get("responses") or responses
    if secured and op.public:
        out["security"] = []
    return out


def encoded(operations: Sequence[Operation], *, secured: bool) -> bytes:
    return msgspec.json.encode(build(operations, secured=secured))
