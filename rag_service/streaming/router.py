"""Routes of the streaming answers: ``POST /rag/stream``, ``GET /rag/stream/{stream_id}`` (resume)
and ``DELETE /rag/stream/{stream_id}`` (cancel).

Ordinary FastAPI routes. The question's body is parsed and validated by FastAPI through one
pydantic model (``StreamRequestBody``), which also gives ``/openapi.json`` its schema, so the
documentation and the validation cannot disagree (``streaming/request_body.py``). A failure
before the stream starts is one of our errors, mapped to the JSON error shape in
``api/errors.py`` (validation errors too: 400 with the fields). The body size limit applies
before FastAPI reads the body (``body_limited_route`` in ``api/schemas.py``).

Mounting (in ``create_app``)::

    app.include_router(
        stream_router(get_deps=lambda request: request.app.state.stream_deps,
                      principal=client_principal(settings.api_keys))
    )

``get_deps`` is a plain function of the ``Request``. ``principal`` is a FastAPI dependency of the
``Request`` (async, or sync, which FastAPI runs in a thread): it raises ``Unauthorized`` for a
missing/wrong key and returns the caller's identity (``None`` when auth is off). A stream may be
resumed or cancelled only by the identity that created it. With several replicas (Redis), a
stream is resumed or cancelled on whichever replica the request lands (``streaming/replicas``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, Field

from rag_service.api import (
    CLIENT_AUTH,
    CONTEXT_ID_PATTERN,
    NATIVE_SSE_EVENT,
    PrincipalDependency,
    body_limited_router,
    error_responses,
    sse_content,
)
from rag_service.streaming.answer import StreamDeps, start_answer, takeover_of
from rag_service.streaming.replicas import cancel_stream as cancel_anywhere
from rag_service.streaming.replicas import check_resume_point, find_stream
from rag_service.streaming.request_body import StreamRequestBody, answer_request
from rag_service.streaming.session import StreamSession
from rag_service.streaming.sse_format import NativeSseEncoder, parse_last_event_id, retry_field
from rag_service.streaming.sse_response import SessionResponse

__all__ = ["DepsLookup", "stream_router"]

DepsLookup = Callable[[Request], StreamDeps]

STREAM_PATH = "/rag/stream"

_SSE = {
    "description": "The answer as Server-Sent Events (see docs/streaming.md).",
    "content": sse_content(NATIVE_SSE_EVENT),
}
_CREATE_DOC: dict[int | str, dict[str, Any]] = {
    200: _SSE,
    **error_responses(400, 401, 413, 429, 503),
}
_RESUME_DOC: dict[int | str, dict[str, Any]] = {
    200: _SSE,
    **error_responses(400, 401, 403, 404, 503),
}
_CANCEL_DOC: dict[int | str, dict[str, Any]] = {
    200: {"description": "The stream has ended: cancelled now, or it had ended before."},
    **error_responses(401, 403, 404, 503),
}


class StreamCancelResult(BaseModel):
    """The answer of ``DELETE /rag/stream/{stream_id}``."""

    stream_id: str = Field(description="The stream asked for.")
    cancelled: bool = Field(
        description="True: its generation was running and is cancelled now (its last event is "
        "an `error` with code `cancelled`; with several replicas, the one generating it "
        "cancels it at its next event). False: it had already ended (`done` or `error`)."
    )


def stream_router(*, get_deps: DepsLookup, principal: PrincipalDependency) -> APIRouter:
    """The two stream routes, bound to the app's dependencies (see the module docstring)."""
    router = body_limited_router(
        "streaming", lambda request: get_deps(request).settings.stream.max_body_bytes
    )
    # A default, not Annotated[...]: FastAPI resolves annotation strings in module globals.
    client_dependency = Depends(principal)

    @router.post(
        STREAM_PATH,
        response_class=SessionResponse,
        status_code=200,
        responses=_CREATE_DOC,
        openapi_extra=CLIENT_AUTH,
        summary="Create Stream",
    )
    async def create_stream(
        request: Request,
        body: StreamRequestBody,
        context: Annotated[
            str | None,
            Query(pattern=CONTEXT_ID_PATTERN, description="The conversation's context id."),
        ] = None,
        client: str | None = client_dependency,
    ) -> SessionResponse:
        """Answer a question as a stream of SSE events (``?context=<contextId>``, JSON body)."""
        deps = get_deps(request)
        limits = deps.settings.stream
        answer = answer_request(body, context_param=context, max_query_chars=limits.max_query_chars)
        session = await start_answer(deps, answer, principal=client)
        return _stream_response(deps, session, after_seq=0)

    @router.get(
        STREAM_PATH + "/{stream_id}",
        response_class=SessionResponse,
        status_code=200,
        responses=_RESUME_DOC,
        openapi_extra=CLIENT_AUTH,
        summary="Resume Stream",
    )
    async def resume_stream(
        request: Request,
        stream_id: str,
        last_event_id: Annotated[
            str | None,
            Header(
                alias="Last-Event-ID",
                description="`<stream_id>:<seq>` of this stream's last event received; "
                "without it (or empty) the stream is replayed from the start.",
            ),
        ] = None,
        client: str | None = client_dependency,
    ) -> SessionResponse:
        """Replay the events after ``Last-Event-ID`` (all without it), then follow live."""
        deps = get_deps(request)
        session = await find_stream(
            deps.registry, deps.shared, deps.settings.stream, stream_id, client, takeover_of(deps)
        )
        after_seq = parse_last_event_id(last_event_id, stream_id)
        await check_resume_point(session, after_seq)
        deps.registry.attach(session)
        return _stream_response(deps, session, after_seq=after_seq)

    @router.delete(
        STREAM_PATH + "/{stream_id}",
        response_model=StreamCancelResult,
        status_code=200,
        responses=_CANCEL_DOC,
        openapi_extra=CLIENT_AUTH,
        summary="Cancel Stream",
    )
    async def cancel_stream(
        request: Request, stream_id: str, client: str | None = client_dependency
    ) -> StreamCancelResult:
        """Stop the stream's generation now (closing the upstream request). Its readers get a
        final `error` event (`cancelled`, not retryable), and the stream stays resumable, so
        a client that reconnects sees how it ended. Cancelling an ended stream changes nothing.
        """
        deps = get_deps(request)
        cancelled = await cancel_anywhere(deps.registry, deps.shared, stream_id, client)
        return StreamCancelResult(stream_id=stream_id, cancelled=cancelled)

    return router


def _stream_response(
    deps: StreamDeps, session: StreamSession, *, after_seq: int
) -> SessionResponse:
    return SessionResponse(
        session,
        deps.registry,
        encoder=NativeSseEncoder(session.stream_id),
        after_seq=after_seq,
        opening=retry_field(deps.settings.stream.retry_hint_ms, deps.rng),
    )
