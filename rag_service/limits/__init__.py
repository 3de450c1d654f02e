"""Per-client-key limits: concurrent streams and a request rate, past them 429 (docs/limits.md)."""

from rag_service.limits.key_limits import (
    KeyLimiter,
    KeyLimits,
    KeyLimitStats,
    StreamSlot,
    limits_by_key,
)
from rag_service.limits.memory import InMemoryKeyLimiter

__all__ = [
    "InMemoryKeyLimiter",
    "KeyLimitStats",
    "KeyLimiter",
    "KeyLimits",
    "StreamSlot",
    "limits_by_key",
]
