"""What the client asks for (the opening requests) and what a finished answer is."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rag_service import __version__
from rag_service.client._errors import StreamFailed
from rag_service.client._events import Done, Meta
from rag_service.client._resume import STREAM_PATH, Opening, Resumption

__all__ = [
    "CHAT_PATH",
    "CONTEXT_ID_HEADER",
    "DEFAULT_URL",
    "Answer",
    "Message",
    "chat_opening",
    "finished_answer",
    "question_opening",
    "request_headers",
    "resume_opening",
]

CHAT_PATH = "/v1/chat/completions"
CONTEXT_ID_HEADER = "X-Context-Id"
DEFAULT_URL = "http://127.0.0.1:8000"

Message = Mapping[str, Any]


@dataclass(frozen=True)
class Answer:
    """A whole answer: its text (exactly once), the ``Meta`` and ``Done`` events, the stream's
    id and how many reconnects it took."""

    text: str
    meta: Meta | None
    done: Done
    stream_id: str | None
    reconnects: int


def question_opening(
    question: str,
    *,
    context: str,
    messages: Sequence[Message] | None,
    filters: Mapping[str, str | int | float | bool] | None,
    refresh: bool | None,
    top_k: int | None,
) -> Opening:
    """``POST /rag/stream?context=...`` for ``question`` (docs/streaming.md, Request)."""
    body: dict[str, Any] = {"query": question}
    if messages is not None:
        body["messages"] = [dict(message) for message in messages]
    if filters is not None:
        body["filters"] = dict(filters)
    if refresh is not None:
        body["refresh"] = refresh
    if top_k is not None:
        body["top_k"] = top_k
    return Opening("POST", STREAM_PATH, {"context": context}, body)


def chat_opening(messages: Sequence[Message], *, model: str, options: Mapping[str, Any]) -> Opening:
    """A streamed ``POST /v1/chat/completions`` (docs/openai-compat.md)."""
    body = {**options, "model": model, "messages": [dict(m) for m in messages], "stream": True}
    return Opening("POST", CHAT_PATH, {}, body, openai=True)


def resume_opening(stream_id: str, last_event_id: str | None) -> Opening:
    """``GET /rag/stream/{stream_id}`` after ``last_event_id`` (from the start without)."""
    after_seq = 0
    if last_event_id:
        prefix, _, seq = last_event_id.rpartition(":")
        if prefix != stream_id or not seq.isdigit():
            raise ValueError("last_event_id must be '<stream_id>:<seq>' of this stream")
        after_seq = int(seq)
    return Opening("GET", f"{STREAM_PATH}/{stream_id}", stream_id=stream_id, after_seq=after_seq)


def request_headers(api_key: str | None, context: str | None = None) -> dict[str, str]:
    headers = {"User-Agent": f"rag-service-client/{__version__}"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if context is not None:
        headers[CONTEXT_ID_HEADER] = context
    return headers


def finished_answer(progress: Resumption) -> Answer:
    """The answer of a stream read to its end; a failed one raises ``StreamFailed``."""
    if progress.error is not None:
        error = progress.error
        raise StreamFailed(
            error.code,
            error.message,
            retryable=error.retryable,
            retry_after_s=error.retry_after_s,
            text=progress.text,
        )
    if progress.done is None:  # the caller stopped reading early
        raise StreamFailed("incomplete", "the stream was closed before its end", text=progress.text)
    return Answer(
        progress.text, progress.meta, progress.done, progress.stream_id, progress.reconnects
    )
