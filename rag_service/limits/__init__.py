"""Per-client-key limits: concurrent streams and a request rate, past them 429 (docs/limits.md)."""

from rag_service.limits.fallback import FallbackKeyLimiter
from rag_service.limits.key_limits import (
    KeyLimiter,
    KeyLimits,
    KeyLimitStats,
    StreamSlot,
    limits_by_key,
)
from rag_service.limits.memory import InMemoryKeyLimiter
from rag_service.limits.redis_limiter import RedisKeyLimiter

__all__ = [
    "FallbackKeyLimiter",
    "InMemoryKeyLimiter",
    "KeyLimitStats",
    "KeyLimiter",
    "KeyLimits",
    "RedisKeyLimiter",
    "StreamSlot",
    "limits_by_key",
]
