"""The backoff-protected streaming client of the upstream LLM (see docs/upstream.md)."""

from rag_service.sse_parser import SSEEvent, SSEParser
from rag_service.upstream.backoff import BackoffPolicy, BackoffSchedule
from rag_service.upstream.breaker import BreakerState, CircuitBreaker, Permit
from rag_service.upstream.breaker_sharing import BreakerNews, BreakerSharing, NewsListener
from rag_service.upstream.budget import RetryBudget
from rag_service.upstream.client import OpenAICompatibleUpstream
from rag_service.upstream.metrics import NoopUpstreamMetrics, UpstreamMetrics

__all__ = [
    "BackoffPolicy",
    "BackoffSchedule",
    "BreakerNews",
    "BreakerSharing",
    "BreakerState",
    "CircuitBreaker",
    "NewsListener",
    "NoopUpstreamMetrics",
    "OpenAICompatibleUpstream",
    "Permit",
    "RetryBudget",
    "SSEEvent",
    "SSEParser",
    "UpstreamMetrics",
]
