"""The OpenAI-compatible facade: ``POST /v1/chat/completions`` and ``GET /v1/models``.

The official ``openai`` SDKs work against it unchanged (``base_url=<service>/v1``, the client
key as ``api_key``). An answer runs exactly like one of ``POST /rag/stream`` (``start_answer``,
a session in the stream registry, the same exactly-once guarantees); only its presentation
differs (see ``openai/stream.py``). A streamed completion's id is ``chatcmpl-<stream_id>`` and its
SSE ids are the native ``<stream_id>:<seq>``, so a broken OpenAI stream can be resumed through
``GET /rag/stream/{stream_id}`` with ``Last-Event-ID``.

Mounting (in ``create_app``)::

    app.include_router(
        openai_router(get_deps=lambda request: request.app.state.stream_deps,
                      principal=client_principal(settings.api_keys))
    )

``get_deps`` and ``principal`` are what ``stream_router`` takes; the same client keys apply. The
body size limit of ``/rag/stream`` applies (``body_limited_route``, ``api/schemas.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from starlette.responses import JSONResponse, Response

from rag_service.api import (
    CLIENT_AUTH,
    CONTEXT_ID_PATTERN,
    OPENAI_SSE_EVENT,
    PrincipalDependency,
    body_limited_router,
    error_responses,
    sse_content,
)
from rag_service.domain import ChatMessage, ChatRequest, ResolvedContext
from rag_service.errors import NotFound, RagServiceError
from rag_service.openai.schemas import (
    ChatCompletionBody,
    ChatCompletionRequest,
    parse_chat_completion,
)
from rag_service.openai.stream import (
    ChunkEncoder,
    CollectedAnswer,
    collect_answer,
    completion_id,
    finish_reason,
    rag_field,
)
from rag_service.streaming import SessionResponse, StreamDeps, StreamSession, start_answer

OWNER = "rag-service"
CONTEXT_ID_HEADER = "X-Context-Id"
# An error without a known code came from generating the answer, i.e. from the upstream side.
_UNKNOWN_ERROR_STATUS = 502

_CHAT_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "application/json": {"schema": {"type": "object"}},
            **sse_content(OPENAI_SSE_EVENT),
        },
        "description": "A chat.completion object, or chat.completion.chunk events (stream: true).",
    },
    # 502/503: a non-streamed answer whose generation failed answers with that error's status.
    **error_responses(400, 401, 413, 429, 502, 503),
}
_MODELS_DOC = error_responses(401)
_MODEL_DOC = error_responses(401, 404)


def openai_router(
    *,
    get_deps: Callable[[Request], StreamDeps],
    principal: PrincipalDependency,
    wall_clock: Callable[[], float] = time.time,
) -> APIRouter:
    """The OpenAI-compatible routes, bound to the app's dependencies (see the module docstring).

    ``wall_clock`` gives the ``created`` timestamps (Unix seconds).
    """
    router = body_limited_router(
        "openai", lambda request: get_deps(request).settings.stream.max_body_bytes
    )
    # A default, not Annotated[...]: FastAPI resolves annotation strings in module globals.
    client_dependency = Depends(principal)
    listed_since = int(wall_clock())

    @router.post(
        "/v1/chat/completions",
        response_model=None,
        responses=_CHAT_DOC,
        openapi_extra=CLIENT_AUTH,
    )
    async def chat_completions(
        request: Request,
        body: ChatCompletionBody,
        context_header: Annotated[
            str | None,
            Header(
                alias=CONTEXT_ID_HEADER,
                pattern=CONTEXT_ID_PATTERN,
                description="The conversation's context id (else `user`, else one per request).",
            ),
        ] = None,
        client: str | None = client_dependency,
    ) -> Response:
        """OpenAI Chat Completions: the last user message is the question (see docs)."""
        deps = get_deps(request)
        limits = deps.settings.stream
        chat = parse_chat_completion(
            body,
            context_header=context_header,
            upstream=deps.settings.upstream,
            max_query_chars=limits.max_query_chars,
        )
        session = await start_answer(
            with_upstream_params(deps, chat.upstream_params), chat.answer, principal=client
        )
        headers = {CONTEXT_ID_HEADER: chat.answer.context_id, "Cache-Control": "no-store"}
        created = int(wall_clock())
        if chat.stream:
            return _chunk_stream(deps, session, chat, created, headers)
        try:
            answer = await collect_answer(session)
        finally:
            deps.registry.detach(session)
        if answer.error is not None:
            return error_payload_response(answer.error)
        completion = completion_body(session.stream_id, chat, answer, created)
        return JSONResponse(completion, headers=headers)

    @router.get("/v1/models", responses=_MODELS_DOC, openapi_extra=CLIENT_AUTH)
    async def list_models(request: Request, client: str | None = client_dependency) -> Any:
        """The configured upstream model: the one every completion is generated with."""
        model = get_deps(request).settings.upstream.model
        return {"object": "list", "data": [model_entry(model, listed_since)]}

    @router.get("/v1/models/{model_id:path}", responses=_MODEL_DOC, openapi_extra=CLIENT_AUTH)
    async def get_model(
        model_id: str, request: Request, client: str | None = client_dependency
    ) -> Any:
        """One model; only the configured upstream model exists."""
        model = get_deps(request).settings.upstream.model
        if model_id != model:
            raise NotFound(f"the model {model_id!r} does not exist; this service serves {model!r}")
        return model_entry(model, listed_since)

    return router


def with_upstream_params(deps: StreamDeps, params: dict[str, Any]) -> StreamDeps:
    """``deps`` whose prompt builder adds ``params`` to the upstream request body."""
    if not params:
        return deps
    build = deps.build_request

    def build_with_params(
        context: ResolvedContext,
        query: str,
        history: Sequence[ChatMessage],
        *,
        char_budget: int,
    ) -> ChatRequest:
        built = build(context, query, history, char_budget=char_budget)
        return replace(built, params={**built.params, **params})

    return replace(deps, build_request=build_with_params)


def completion_body(
    stream_id: str, chat: ChatCompletionRequest, answer: CollectedAnswer, created: int
) -> dict[str, Any]:
    """The ``chat.completion`` object of a finished answer, with the extra ``rag`` field."""
    done = answer.done or {}
    body: dict[str, Any] = {
        "id": completion_id(stream_id),
        "object": "chat.completion",
        "created": created,
        "model": chat.model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(done.get("finish_reason")),
            }
        ],
        "rag": rag_field(answer.meta) | {"timings": done.get("timings")},
    }
    if done.get("usage") is not None:
        body["usage"] = done["usage"]
    return body


def model_entry(model: str, created: int) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": created, "owned_by": OWNER}


def error_payload_response(payload: dict[str, Any]) -> JSONResponse:
    """The JSON error shape for an ``error`` event's payload, with its error class's status.

    Mirrors ``rag_service.api.errors.error_response`` for an error that reached us as a payload
    (the generation task raised it) rather than as an exception.
    """
    headers = {}
    retry_after_s = payload.get("retry_after_s")
    if isinstance(retry_after_s, int | float):
        headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
    return JSONResponse(
        {"error": payload}, status_code=status_for_code(payload.get("code")), headers=headers
    )


def status_for_code(code: object) -> int:
    """The HTTP status of the ``RagServiceError`` class whose ``code`` this is."""
    pending: list[type[RagServiceError]] = [RagServiceError]
    while pending:
        error_class = pending.pop()
        if error_class.code == code:
            return error_class.http_status
        pending.extend(error_class.__subclasses__())
    return _UNKNOWN_ERROR_STATUS


def _chunk_stream(
    deps: StreamDeps,
    session: StreamSession,
    chat: ChatCompletionRequest,
    created: int,
    headers: dict[str, str],
) -> SessionResponse:
    encoder = ChunkEncoder(
        stream_id=session.stream_id,
        model=chat.model,
        created=created,
        include_usage=chat.include_usage,
    )
    return SessionResponse(session, deps.registry, encoder=encoder, headers=headers)
