"""The one place that maps errors to HTTP responses: ``{"error": {"code", "message", ...}}``.

Our own errors carry their status and code (``rag_service/errors.py``). FastAPI's validation
errors (a route's body, query or header parameters) become ``InvalidInput``: 400, with
``details.errors`` naming each field and its problem, and never the values sent.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette.routing import Match

from rag_service.errors import InvalidInput, RagServiceError, RequestTimeout

log = logging.getLogger("rag_service.api")

_STATUS_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def error_response(error: RagServiceError) -> JSONResponse:
    headers = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_s)))
    if error.http_status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error, RequestTimeout):
        # The rest of the slow body may still be on its way: only a new connection starts clean.
        headers["Connection"] = "close"
    return JSONResponse(
        {"error": error.to_payload()}, status_code=error.http_status, headers=headers
    )


async def _rag_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RagServiceError)
    if exc.http_status >= 500:
        log.warning("%s %s failed: %s", request.method, request.url.path, exc.message)
    return error_response(exc)


# The methods a 405's Allow may name (``_allowed_methods``).
_HTTP_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
# Where FastAPI found a parameter: the first part of a validation error's ``loc``.
_PARAMETER_SOURCES = frozenset({"body", "query", "header", "path", "cookie"})
# A body that is not a JSON object at all (an array, or not JSON: a non-JSON content type).
_NOT_AN_OBJECT = frozenset({"model_attributes_type", "model_type", "dict_type"})


def validation_problem(error: Mapping[str, Any]) -> dict[str, str]:
    """One of FastAPI's validation errors as ``{field, problem}``, without the input value."""
    loc = [str(part) for part in error.get("loc", ())]
    if loc and loc[0] in _PARAMETER_SOURCES:
        source, path = loc[0], loc[1:]
    else:
        source, path = "", loc
    kind = error.get("type")
    if kind == "json_invalid":
        ctx = error.get("ctx") or {}
        return {"field": "body", "problem": f"not valid JSON ({ctx.get('error', 'malformed')})"}
    if source == "body" and not path and kind in _NOT_AN_OBJECT:
        return {
            "field": "body",
            "problem": "must be a JSON object (Content-Type: application/json)",
        }
    return {"field": ".".join(path) or source or "request", "problem": str(error.get("msg"))}


def invalid_input(what: str, errors: Sequence[Mapping[str, Any]]) -> InvalidInput:
    """``InvalidInput`` for pydantic's ``errors`` of ``what`` ("request", "request body"): each
    field and its problem in ``details.errors``, the first five in the message."""
    problems = [validation_problem(error) for error in errors]
    summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:5])
    return InvalidInput(f"invalid {what}: {summary}", details={"errors": problems})


def validation_error(exc: RequestValidationError) -> InvalidInput:
    return invalid_input("request", exc.errors())


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(validation_error(exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    body = {"code": code, "message": str(exc.detail), "retryable": False}
    headers = exc.headers
    allowed = _allowed_methods(request) if exc.status_code == 405 else []
    if allowed:  # none: a 405 of something else than a route (static files): its own Allow
        headers = {**(headers or {}), "Allow": ", ".join(allowed)}
    return JSONResponse({"error": body}, status_code=exc.status_code, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """The methods of every route of this path: Starlette's 405 names only the first route's
    (``GET /rag/stream/{id}`` resumes and ``DELETE`` cancels: two routes, one path). A route
    counts for a method it matches in full where it matched this request only in part."""
    partial = [r for r in request.app.routes if r.matches(request.scope)[0] is Match.PARTIAL]
    return [
        method
        for method in _HTTP_METHODS
        if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in partial)
    ]


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error in %s %s", request.method, request.url.path)
    body = {"code": "internal_error", "message": "internal server error", "retryable": True}
    return JSONResponse({"error": body}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RagServiceError, _rag_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
