"""Routes of the streaming answers: ``POST /rag/stream`` and ``GET /rag/stream/{stream_id}``.

Mounting (in ``create_app``)::

    registry = StreamRegistry(settings.stream)
    app.state.stream_deps = StreamDeps(
        resolver=resolver, upstream=upstream, registry=registry, settings=settings,
        build_request=build_chat_request,   # rag_service.retrieval.prompt
    )
    app.include_router(
        stream_router(get_deps=lambda request: request.app.state.stream_deps,
                      principal=client_principal)   # the auth dependency: -> str | None
    )
    # lifespan shutdown: await registry.close()

``get_deps`` is a plain function of the ``Request`` (not a FastAPI dependency), so a lambda is
fine. ``principal`` *is* a FastAPI dependency (sync or async): it raises ``Unauthorized`` for a
missing/wrong key and returns the caller's identity (``None`` when auth is off). A stream may be
resumed only by the identity that created it.

Every failure before the first byte raises a ``RagServiceError``; the app's exception handler
turns it into ``{"error": {...}}`` with the error's status (and ``Retry-After`` when set).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from rag_service.api.schemas import parse_stream_request, read_limited_body
from rag_service.errors import InvalidInput, NotFound
from rag_service.streaming.answer import StreamDeps, start_answer
from rag_service.streaming.session import StreamSession
from rag_service.streaming.sse_format import parse_last_event_id, retry_field
from rag_service.streaming.sse_response import SseResponse

PrincipalDependency = Callable[..., Awaitable[str | None]] | Callable[..., str | None]

_SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "The answer as SSE."}
}


def stream_router(
    *, get_deps: Callable[[Request], StreamDeps], principal: PrincipalDependency
) -> APIRouter:
    """The streaming routes, bound to the app's dependencies (see the module docstring)."""
    router = APIRouter(tags=["streaming"])
    # A default, not Annotated[...]: with postponed annotations FastAPI resolves annotation
    # strings in module globals, where this closure's dependency is not visible.
    client_dependency = Depends(principal)

    @router.post("/rag/stream", response_class=SseResponse, responses=_SSE_DOC)
    async def create_stream(request: Request, client: str | None = client_dependency) -> Response:
        """Answer a question as a stream of SSE events (``?context=<contextId>``, JSON body)."""
        deps = get_deps(request)
        limits = deps.settings.stream
        raw = await read_limited_body(
            request.stream(), request.headers.get("content-length"), limits.max_body_bytes
        )
        answer = parse_stream_request(
            raw,
            context_param=request.query_params.get("context"),
            max_query_chars=limits.max_query_chars,
        )
        session = await start_answer(deps, answer, principal=client)
        return _stream_response(deps, session, after_seq=0)

    @router.get("/rag/stream/{stream_id}", response_class=SseResponse, responses=_SSE_DOC)
    async def resume_stream(
        stream_id: str, request: Request, client: str | None = client_dependency
    ) -> Response:
        """Replay the events after ``Last-Event-ID`` (all without it), then follow live."""
        deps = get_deps(request)
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

    return router


def _stream_response(deps: StreamDeps, session: StreamSession, *, after_seq: int) -> SseResponse:
    limits = deps.settings.stream
    return SseResponse(
        session,
        deps.registry,
        after_seq=after_seq,
        opening=retry_field(limits.retry_hint_ms, deps.rng),
    )
