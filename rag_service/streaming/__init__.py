"""Streaming answers over SSE: sessions with replay buffers, their registry, and the response.

The routes that serve them are ``stream_router`` (``rag_service.streaming.router``). The store
that replicas share streams through is a port (``rag_service.ports.SharedStreams``), its values
domain types (``DeltaEvent``, ``StreamRecord``, ...).

See docs/streaming.md for the event format, resume semantics and lifetimes.
"""

from rag_service.streaming.answer import (
    AnswerRequest,
    PromptBuilder,
    StreamDeps,
    meta_payload,
    start_answer,
)
from rag_service.streaming.loop_lag import LoopLagMonitor
from rag_service.streaming.registry import StreamRegistry
from rag_service.streaming.router import stream_router
from rag_service.streaming.session import StreamSession
from rag_service.streaming.shared_streams import InProcessStreams
from rag_service.streaming.sse_format import EventByEventEncoder, to_json
from rag_service.streaming.sse_response import BATCH_EVENTS, SessionResponse
from rag_service.streaming.stream_stats import StreamStats

__all__ = [
    "BATCH_EVENTS",
    "AnswerRequest",
    "EventByEventEncoder",
    "InProcessStreams",
    "LoopLagMonitor",
    "PromptBuilder",
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
