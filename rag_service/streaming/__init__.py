"""Streaming answers over SSE: sessions with replay buffers, their registry, and the response.

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
from rag_service.streaming.session import StreamSession
from rag_service.streaming.sse_response import SessionResponse
from rag_service.streaming.stream_stats import StreamStats

__all__ = [
    "AnswerRequest",
    "PromptBuilder",
    "SessionResponse",
    "StreamDeps",
    "StreamRegistry",
    "StreamSession",
    "StreamStats",
    "meta_payload",
    "start_answer",
]
