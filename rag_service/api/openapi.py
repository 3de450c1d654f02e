"""What ``/openapi.json`` says: every status and content type the routes really answer with.

FastAPI documents a route's success response and, for routes with parameters, a ``422`` that
this service never sends (validation errors are ``400``, ``api/errors.py``). The routes declare
their error answers with ``error_responses(...)`` (one shared model, ``ErrorBody``), their
security with ``CLIENT_AUTH`` / ``ADMIN_AUTH``, and their media types with ``response_class`` or
``responses=``. ``install_openapi`` (called once by ``create_app``) is FastAPI's documented
"Extending OpenAPI" hook: it builds the schema with ``get_openapi`` and then states what depends
on the app's settings or on all routes at once:

- the ``422`` responses and their ``HTTPValidationError`` schemas are dropped;
- the bearer security schemes; without client keys the client routes are open, so their
  security requirement and their ``401`` are dropped;
- the configured ``max_query_chars`` as the ``maxLength`` of ``StreamRequestBody.query``;
- answers any route may give: ``503`` when the process is at its connection cap
  (``RAG_SERVER__MAX_CONNECTIONS``), and ``408`` for a request body that arrives too slowly.

Text fields carry the JSON-schema pattern ``NO_NUL_PATTERN`` (``TextPattern``): their values are
checked by ``rag_service.safe_text.SafeStr`` (no NUL, no lone surrogate, 400), and the pattern
says the part of it JSON Schema can express (a lone surrogate cannot be written as UTF-8 at all).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from rag_service.settings import Settings

CLIENT_SCHEME = "ClientKey"
ADMIN_SCHEME = "AdminKey"
CLIENT_AUTH: dict[str, Any] = {"security": [{CLIENT_SCHEME: []}]}
ADMIN_AUTH: dict[str, Any] = {"security": [{ADMIN_SCHEME: []}]}

# A text without NUL characters (written as a regex escape, read alike by Python, ECMAScript
# and Rust regex engines).
NO_NUL_PATTERN = r"^[^\x00]*$"

_ERROR_BODY_REF = "#/components/schemas/ErrorBody"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 1},
    }
}
_WWW_AUTHENTICATE = {"WWW-Authenticate": {"description": "`Bearer`.", "schema": {"type": "string"}}}

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Invalid request: malformed JSON, a wrong type, a value out of range, a NUL character "
    "or a lone surrogate in a text (`details.errors` names each field).",
    401: "Missing or wrong key (`Authorization: Bearer <key>`).",
    403: "Not allowed: another client's stream, or the admin endpoints are disabled.",
    404: "Not found (unknown or expired stream, job or model; events no longer held).",
    408: "The request body arrived too slowly; the connection is closed after this answer.",
    409: "Conflict: another ingest is running, or a sync would delete too much without "
    "`confirm_deletions`.",
    413: "Request body too large.",
    429: "This key is past its concurrent-stream limit or its request rate.",
    502: "The upstream LLM failed or cannot be reached as configured.",
    503: "Unavailable for now: upstream circuit open, too many streams, overloaded, shutting "
    "down, a dependency down, or the process at its connection cap.",
}


class ErrorDetail(BaseModel):
    """The ``error`` object; the same fields as an SSE ``error`` event."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(description="Stable, machine-readable, e.g. `invalid_request`.")
    message: str = Field(description="For people.")
    retryable: bool = Field(description="Whether the same request may succeed later.")
    retry_after_s: float | None = Field(None, description="Seconds to wait, when known.")
    details: dict[str, Any] | None = Field(None, description="More about this error.")


class ErrorBody(BaseModel):
    """Every error answer of every route: ``{"error": {"code", "message", "retryable"}}``."""

    model_config = ConfigDict(extra="allow")

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for these error statuses: ``ErrorBody`` as ``application/json``.

    The content is spelt out rather than given as ``model``: FastAPI would file a model under
    the route's own media type, ``text/event-stream`` for the stream routes.
    """
    return {status: _error_response(status) for status in statuses}


@dataclass(frozen=True)
class TextPattern:
    """``Annotated[str, TextPattern(regex)]``: ``regex`` as the field's JSON-schema ``pattern``.

    Documentation only (pydantic's public JSON-schema hook); the check itself is the field's
    validator (``SafeStr``) or the route's, so error messages stay readable.
    """

    regex: str = NO_NUL_PATTERN

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["pattern"] = self.regex
        return schema


@dataclass(frozen=True)
class TextKeys:
    """``Annotated[dict[SafeStr, ...], TextKeys()]``: the keys' ``NO_NUL_PATTERN`` as the
    object's ``propertyNames`` (a pattern on the key type itself would become
    ``patternProperties``, which means something else)."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.setdefault("propertyNames", {})["pattern"] = NO_NUL_PATTERN
        return schema


_EVENT_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]+:[0-9]+$"}
_JSON_DATA = {"type": "string", "contentMediaType": "application/json"}


def sse_content(event: dict[str, Any]) -> dict[str, Any]:
    """The ``content`` of a ``text/event-stream`` answer whose events are ``event``: the
    ``itemSchema`` of OpenAPI 3.2, one object per event with its ``event``, ``id``, ``data``
    and ``retry`` fields, as SSE parsers hand them over."""
    return {"text/event-stream": {"itemSchema": event}}


NATIVE_SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"enum": ["meta", "delta", "retry", "resumed", "done", "error"]},
        "id": _EVENT_ID,
        "data": _JSON_DATA,
    },
}
"""An event of ``POST /rag/stream`` and ``GET /rag/stream/{stream_id}`` (docs/streaming.md)."""

OPENAI_SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"const": "message"},
        "id": _EVENT_ID,
        "data": {
            "type": "string",
            "description": 'A chat.completion.chunk or an `{"error"}` object; `[DONE]` last.',
        },
    },
}
"""An event of a streamed ``POST /v1/chat/completions`` (no event names: all are ``message``)."""


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Make ``app.openapi()`` (and ``/openapi.json``) describe what ``app`` answers."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = truthful(schema, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way


def truthful(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """``schema`` (from ``get_openapi``) with the changes listed in the module docstring."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in _VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    _add_model(schemas, ErrorBody)
    components["securitySchemes"] = {
        CLIENT_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "A client key (`RAG_API_KEYS`); the client routes are open without "
            "configured keys.",
        },
        ADMIN_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "The admin key (`RAG_ADMIN_API_KEY`); without it /admin answers 403.",
        },
    }
    client_keys = bool(settings.api_keys)
    for operation in _operations(schema):
        responses = operation["responses"]
        for response in responses.values():
            sse = response.get("content", {}).get("text/event-stream", {})
            if "itemSchema" in sse:  # FastAPI's "a string" would say the body is one string
                sse.pop("schema", None)
        responses.pop("422", None)
        if not client_keys and operation.get("security") == CLIENT_AUTH["security"]:
            del operation["security"]
            responses.pop("401", None)
        for status in (503, 408) if "requestBody" in operation else (503,):
            responses.setdefault(str(status), _error_response(status))
    stream_body = schemas.get("StreamRequestBody", {}).get("properties", {})
    if "query" in stream_body:
        stream_body["query"]["maxLength"] = settings.stream.max_query_chars
    return schema


def _operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        operation
        for path in schema.get("paths", {}).values()
        for method, operation in path.items()
        if method in _METHODS
    ]


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERROR_DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": _ERROR_BODY_REF}}},
    }
    if status in (429, 503):
        response["headers"] = _RETRY_AFTER
    elif status == 401:
        response["headers"] = _WWW_AUTHENTICATE
    return response


def _add_model(schemas: dict[str, Any], model: type[BaseModel]) -> None:
    """``model``'s JSON schema (and the models it uses) in ``components.schemas``."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema


_READINESS_SCHEMA = {
    "type": "object",
    "required": ["status", "components"],
    "properties": {
        "status": {"enum": ["ready", "not_ready"]},
        "components": {
            "type": "object",
            "description": "Each checked component: `ok`, and what was found.",
            "additionalProperties": {
                "type": "object",
                "required": ["ok"],
                "properties": {"ok": {"type": "boolean"}},
            },
        },
    },
}
READINESS_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Ready: every required component works.",
        "content": {"application/json": {"schema": _READINESS_SCHEMA}},
    },
    503: {
        "description": "Not ready: a required component fails (each component says why).",
        "content": {"application/json": {"schema": _READINESS_SCHEMA}},
    },
}
LIVENESS_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The process is alive.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {"status": {"const": "ok"}},
                }
            }
        },
    }
}


def metrics_doc(media_type: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of the Prometheus endpoint, which answers in ``media_type``."""
    return {
        200: {
            "description": "Prometheus text exposition format.",
            "content": {media_type: {"schema": {"type": "string"}}},
        }
    }


def admin_ingest_openapi(body_schema: dict[str, Any], flags: tuple[str, ...]) -> dict[str, Any]:
    """``openapi_extra`` of ``POST /admin/ingest``: its two bodies (a JSON one of
    ``body_schema``, or the uploaded file itself) and the upload's query parameters.

    OpenAPI cannot tie parameters to one of two body media types: the parameters are listed
    as optional, and their descriptions say that they belong to an upload only.
    """
    upload_only = " For an upload only; with a JSON body any query parameter is a 400."
    parameters = [
        {
            "name": "filename",
            "in": "query",
            "required": False,
            "description": "The uploaded file's name (a bare name with a supported suffix, "
            "e.g. `products.jsonl`); required for an upload." + upload_only,
            "schema": {"type": "string", "pattern": NO_NUL_PATTERN},
        },
        *(
            {
                "name": flag,
                "in": "query",
                "required": False,
                "description": f"The `{flag}` option of an upload." + upload_only,
                "schema": {"enum": ["true", "false"]},
            }
            for flag in flags
        ),
    ]
    return {
        **ADMIN_AUTH,
        "parameters": parameters,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": body_schema},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
    }


INGEST_STARTED_DOC: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "The ingest job started.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["job_id", "status"],
                    "properties": {"job_id": {"type": "string"}, "status": {"type": "string"}},
                }
            }
        },
    }
}
