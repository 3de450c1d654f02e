"""Streaming answers over SSE: sessions with replay buffers, their registry, and the response.

The routes that serve them are ``rag_service.streaming.router`` (``stream_router``), imported
from that module: this surface is the streaming services', which adapters import too, and
importing them must not import the HTTP layer.

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
from rag_service.streaming.session import TERMINAL_EVENTS, StreamSession
from rag_service.streaming.shared_streams import (
    HEARTBEAT_EVERY_S,
    HEARTBEAT_TTL_S,
    WATCHED_FOR_S,
    InProcessStreams,
    SharedState,
    SharedStreams,
    SharedStreamStats,
    StreamOwner,
    StreamRecord,
)
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
    "HEARTBEAT_EVERY_S",
    "HEARTBEAT_TTL_S",
    "TERMINAL_EVENTS",
    "WATCHED_FOR_S",
    "AnswerRequest",
    "DeltaEvent",
    "EventByEventEncoder",
    "InProcessStreams",
    "LoopLagMonitor",
    "NamedEvent",
    "PromptBuilder",
    "SessionEvent",
    "SessionResponse",
    "SharedState",
    "SharedStreamStats",
    "SharedStreams",
    "StreamDeps",
    "StreamOwner",
    "StreamRecord",
    "StreamRegistry",
    "StreamSession",
    "StreamStats",
    "meta_payload",
    "start_answer",
    "to_json",
]
