"""Streaming answers over SSE: sessions with replay buffers, their registry, the response, and
the routes that serve them (``router``).

See docs/streaming.md for the event format, resume semantics and lifetimes.
"""

from rag_service.streaming.answer import (
    AnswerRequest,
    PromptBuilder,
    StreamDeps,
    meta_payload,
    start_answer,
)
from rag_service.streaming.registry import StreamRegistry
from rag_service.streaming.router import stream_router
from rag_service.streaming.session import StreamSession
from rag_service.streaming.sse_format import (
    DeltaEvent,
    EventByEventEncoder,
    NamedEvent,
    SessionEvent,
    to_json,
)
from rag_service.streaming.sse_response import BATCH_EVENTS, SessionResponse
from rag_service.streaming.stream_stats import StreamStats

__all__ = [
    "BATCH_EVENTS",
    "AnswerRequest",
    "DeltaEvent",
    "EventByEventEncoder",
    "NamedEvent",
    "PromptBuilder",
    "SessionEvent",
    "SessionResponse",
    "StreamDeps",
    "StreamRegistry",
    "StreamSession",
    "StreamStats",
    "meta_payload",
    "start_answer",
    "stream_router",
    "to_json",
]
