"""Routes of the streaming answers: ``POST /rag/stream`` and ``GET /rag/stream/{stream_id}``.

They are answered in front of FastAPI's middleware stack and routing, not by FastAPI endpoints.
A stream lives for minutes and thousands are open at once. As a FastAPI endpoint, each one paid
for dependency solving, the ``Request``/response models and two ``AsyncExitStack``s per request,
and kept about 12 KB of frames plus the per-event ``send`` wrappers of Starlette's error and
exception middleware alive for its whole life.

``StreamingFastAPI`` (the app class ``create_app`` uses) puts ``StreamRoutes`` at the top of
its middleware stack. ``StreamRoutes`` matches the two routes and runs ``StreamEndpoint``,
wrapped in the app's user middleware (CORS as configured); every other request goes down
FastAPI's usual stack. What the routes promise is unchanged:

- the same validation (``api/schemas.py``) and JSON error shape with status and
  ``Retry-After`` (``api/errors.error_response``);
- the auth principal and the body size limit;
- an unexpected exception becomes a 500 from the app's own ``Exception`` handler (the JSON error
  shape) and is re-raised for the server's log, as Starlette's error middleware does;
- ``/openapi.json`` documents both routes (documentation-only FastAPI routes that
  ``StreamRoutes`` answers in front of).

Mounting (in ``create_app``)::

    app = StreamingFastAPI(...)
    mount_stream_routes(
        app,
        get_deps=lambda request: request.app.state.stream_deps,
        principal=client_principal(settings.api_keys),  # the auth function: -> str | None
    )

``get_deps`` is a plain function of the ``Request``. ``principal`` is a function of the
``Request`` (sync or async, so a FastAPI dependency of that shape fits): it raises
``Unauthorized`` for a missing/wrong key and returns the caller's identity (``None`` when auth is
off). A stream may be resumed only by the identity that created it. The ``Request`` exists only
while a stream is being set up; the response that follows holds no reference to it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, Query
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from rag_service.api.errors import error_response
from rag_service.api.schemas import (
    CONTEXT_ID_PATTERN,
    StreamRequestBody,
    parse_stream_request,
    receive_limited_body,
)
from rag_service.errors import InvalidInput, NotFound, RagServiceError
from rag_service.streaming.answer import StreamDeps, start_answer
from rag_service.streaming.session import StreamSession
from rag_service.streaming.sse_format import parse_last_event_id, retry_field
from rag_service.streaming.sse_response import SseResponse

log = logging.getLogger("rag_service.api")

PrincipalDependency = Callable[..., Awaitable[str | None]] | Callable[..., str | None]
Principal = Callable[[Request], Awaitable[str | None] | str | None]
DepsLookup = Callable[[Request], StreamDeps]

STREAM_PATH = "/rag/stream"
_RESUME_PREFIX = STREAM_PATH + "/"


class StreamingFastAPI(FastAPI):
    """FastAPI that answers the stream routes at the top of its middleware stack.

    Until ``mount_stream_routes`` sets ``stream_endpoint`` it is plain FastAPI.
    """

    stream_endpoint: StreamEndpoint | None = None

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:  # type: ignore[override]
        """What ``FastAPI.__call__`` does for an HTTP request while its native telemetry is
        off (that of ``Starlette.__call__``), without a frame of either kept for the whole of a
        stream: it hands back the middleware stack's awaitable. Everything else (the lifespan,
        websockets, telemetry on, a FastAPI without that check) takes FastAPI's own path."""
        if scope["type"] != "http" or self._native_telemetry_may_run(scope):
            return super().__call__(scope, receive, send)
        if self.root_path:
            scope["root_path"] = self.root_path
        scope["app"] = self
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        return self.middleware_stack(scope, receive, send)

    def _native_telemetry_may_run(self, scope: Scope) -> bool:
        telemetry = getattr(self, "_native_telemetry", None)  # recent FastAPI releases only
        if telemetry is None or not callable(getattr(telemetry, "enabled", None)):
            return True  # unknown to us: FastAPI's own path, whatever it does
        return "fastapi.telemetry" not in scope and bool(telemetry.enabled())

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        if self.stream_endpoint is None:
            return stack
        endpoint: ASGIApp = self.stream_endpoint
        for cls, args, kwargs in reversed(self.user_middleware):
            endpoint = cls(endpoint, *args, **kwargs)
        return StreamRoutes(stack, endpoint)


def _mark_as_coroutine_function(function: Callable[..., Any]) -> None:
    """Let servers that tell ASGI 3 from ASGI 2 by ``asyncio.iscoroutinefunction(app.__call__)``
    (uvicorn, Hypercorn) see ASGI 3 in a function that returns its awaitable instead of being a
    coroutine function: ``inspect.markcoroutinefunction`` from Python 3.12, before that the
    marker 3.11's ``asyncio.iscoroutinefunction`` looks for (as Django marks such views)."""
    mark = getattr(inspect, "markcoroutinefunction", None)
    if mark is not None:
        mark(function)
    else:
        function._is_coroutine = getattr(asyncio.coroutines, "_is_coroutine")  # type: ignore[attr-defined]  # noqa: B009


_mark_as_coroutine_function(StreamingFastAPI.__call__)


def mount_stream_routes(
    app: StreamingFastAPI, *, get_deps: DepsLookup, principal: Principal
) -> None:
    """Serve the streaming routes on ``app`` and document them (see the module docstring).

    Call before the app's first request (its middleware stack is built then).
    """
    app.stream_endpoint = StreamEndpoint(get_deps=get_deps, principal=principal)
    app.include_router(documentation_router())


class StreamRoutes:
    """The top of the middleware stack: the stream routes to ``streams``, the rest to ``app``."""

    __slots__ = ("app", "streams")

    def __init__(self, app: ASGIApp, streams: ASGIApp) -> None:
        self.app = app
        self.streams = streams

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine: it hands back the chosen app's awaitable, so no frame of this
        # dispatch stays alive for the whole of a stream.
        if scope["type"] == "http":
            params = stream_route_params(scope)
            if params is not None:
                scope["path_params"] = params
                return self.streams(scope, receive, send)
        return self.app(scope, receive, send)


def stream_route_params(scope: Scope) -> dict[str, str] | None:
    """The path parameters when ``scope`` asks for one of the stream routes, else None."""
    path = route_path(scope)
    method = scope["method"]
    if path == STREAM_PATH:
        return {} if method == "POST" else None
    if method == "GET" and path.startswith(_RESUME_PREFIX):
        stream_id = path[len(_RESUME_PREFIX) :]
        if stream_id and "/" not in stream_id:
            return {"stream_id": stream_id}
    return None


def route_path(scope: Scope) -> str:
    """The request path below the server's ``root_path`` (what Starlette's routing matches)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path + "/"):
        return path[len(root_path) :]
    return path


class StreamEndpoint:
    """The ASGI app of both routes: set the stream up, then run its response."""

    __slots__ = ("_get_deps", "_principal")

    def __init__(self, *, get_deps: DepsLookup, principal: Principal) -> None:
        self._get_deps = get_deps
        self._principal = principal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self._respond(scope, receive)
        except Exception as error:
            await (await internal_error(scope, error))(scope, receive, send)
            raise
        # Run here, not inside _respond: no frame of the set-up stays alive while it streams.
        await response(scope, receive, send)

    async def _respond(self, scope: Scope, receive: Receive) -> ASGIApp:
        """The stream's response, or the JSON error that refuses it."""
        request = Request(scope, receive)
        try:
            identity = self._principal(request)
            client = await identity if inspect.isawaitable(identity) else identity
            deps = self._get_deps(request)
            stream_id = scope["path_params"].get("stream_id")
            if stream_id is None:
                return await create_stream(deps, request, client)
            return resume_stream(deps, request, client, stream_id)
        except RagServiceError as error:
            if error.http_status >= 500:
                log.warning("%s %s failed: %s", scope["method"], scope["path"], error.message)
            return error_response(error)


async def internal_error(scope: Scope, error: Exception) -> Response:
    """The 500 for an unexpected ``error``, from the app's handler for 500 or ``Exception``."""
    handlers: dict[Any, Any] = getattr(scope.get("app"), "exception_handlers", {})
    handler = handlers.get(500) or handlers.get(Exception)
    if handler is None:
        return PlainTextResponse("Internal Server Error", status_code=500)
    response = handler(Request(scope), error)
    return await response if inspect.isawaitable(response) else response  # type: ignore[no-any-return]


async def create_stream(deps: StreamDeps, request: Request, client: str | None) -> SseResponse:
    """Validate the question, start its answer, and return the response that streams it."""
    limits = deps.settings.stream
    scope = request.scope
    raw = await receive_limited_body(
        request.receive, header_value(scope, b"content-length"), limits.max_body_bytes
    )
    answer = parse_stream_request(
        raw,
        context_param=query_param(scope, "context"),
        max_query_chars=limits.max_query_chars,
    )
    session = await start_answer(deps, answer, principal=client)
    return _stream_response(deps, session, after_seq=0)


def header_value(scope: Scope, name: bytes) -> str | None:
    """``Request(scope).headers.get(name)`` for a lower-case ``name``, without building
    ``Headers``: the first value, decoded as Latin-1."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


def query_param(scope: Scope, name: str) -> str | None:
    """``Request(scope).query_params.get(name)``, without parsing a plain query string in full.

    Starlette decodes the query string as Latin-1 and runs it through ``parse_qsl``, whose
    unquoting changes nothing without ``%`` or ``+``: then splitting is all it does (empty
    fields skipped, a field without ``=`` has the value ``""``, the last field of a name wins).
    """
    raw: bytes = scope["query_string"]
    if b"%" in raw or b"+" in raw:
        return QueryParams(raw).get(name)
    value = None
    for field in raw.decode("latin-1").split("&"):
        key, _, found = field.partition("=")
        if key == name:
            value = found
    return value


def resume_stream(
    deps: StreamDeps, request: Request, client: str | None, stream_id: str
) -> SseResponse:
    """The response replaying the events after ``Last-Event-ID`` (all without it), then live."""
    session = deps.registry.find(stream_id, client)
    after_seq = parse_last_event_id(request.headers.get("last-event-id"), stream_id)
    if after_seq > session.last_seq:
        raise InvalidInput("Last-Event-ID is ahead of the stream")
    if after_seq + 1 < session.first_seq:
        raise NotFound(
            "the events after Last-Event-ID are no longer held",
            details={"reason": "replay_window_exceeded", "first_seq": session.first_seq},
        )
    deps.registry.attach(session)
    return _stream_response(deps, session, after_seq=after_seq)


def _stream_response(deps: StreamDeps, session: StreamSession, *, after_seq: int) -> SseResponse:
    return SseResponse(
        session,
        deps.registry,
        after_seq=after_seq,
        opening=retry_field(deps.settings.stream.retry_hint_ms, deps.rng),
    )


# -- documentation ---------------------------------------------------------------------------------


class EventStream(Response):
    """Documentation only: the media type of the stream routes' 200 responses."""

    media_type = "text/event-stream"


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "retryable"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "retryable": {"type": "boolean"},
                "details": {"type": "object"},
            },
        }
    },
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_SCHEMA}}}


_SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "The answer as SSE."},
    400: _error("Invalid request (see docs/streaming.md)."),
    401: _error("Missing or wrong client key."),
    403: _error("The stream belongs to another client."),
    404: _error("Unknown or expired stream, or the events asked for are no longer held."),
    413: _error("Request body too large."),
    503: _error("Upstream circuit open, too many streams, or shutting down (Retry-After)."),
}


def documentation_router() -> APIRouter:
    """The stream routes as FastAPI sees them: for ``/openapi.json`` only.

    ``StreamRoutes`` answers these requests before FastAPI's routing; reaching an endpoint
    here means it was not mounted.
    """
    router = APIRouter(tags=["streaming"])

    @router.post(
        STREAM_PATH,
        response_class=EventStream,
        status_code=200,
        responses=_SSE_DOC,
        summary="Create Stream",
    )
    async def create_stream_doc(
        body: StreamRequestBody,
        context: Annotated[str | None, Query(pattern=CONTEXT_ID_PATTERN)] = None,
    ) -> None:
        """Answer a question as a stream of SSE events (``?context=<contextId>``, JSON body)."""
        raise _not_mounted()

    @router.get(
        STREAM_PATH + "/{stream_id}",
        response_class=EventStream,
        status_code=200,
        responses=_SSE_DOC,
        summary="Resume Stream",
    )
    async def resume_stream_doc(
        stream_id: str,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    ) -> None:
        """Replay the events after ``Last-Event-ID`` (all without it), then follow live."""
        raise _not_mounted()

    return router


def _not_mounted() -> RagServiceError:
    return RagServiceError("the streaming routes are served by StreamRoutes, which is not mounted")
