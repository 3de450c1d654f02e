"""The backoff-protected streaming client of the upstream LLM (see docs/upstream.md)."""

from rag_service.sse_parser import SSEEvent, SSEParser
from rag_service.upstream.backoff import BackoffPolicy, BackoffSchedule
from rag_service.upstream.breaker import CircuitBreaker, Permit
from rag_service.upstream.breaker_sharing import BreakerSharing, upstream_key
from rag_service.upstream.budget import RetryBudget
from rag_service.upstream.client import OpenAICompatibleUpstream
from rag_service.upstream.metrics import NoopUpstreamMetrics

__all__ = [
    "BackoffPolicy",
    "BackoffSchedule",
    "BreakerSharing",
    "CircuitBreaker",
    "NoopUpstreamMetrics",
    "OpenAICompatibleUpstream",
    "Permit",
    "RetryBudget",
    "SSEEvent",
    "SSEParser",
    "upstream_key",
]
