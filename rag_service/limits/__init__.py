"""Per-key limits: concurrent streams and a request rate, past them 429 (docs/limits.md).

The port (``KeyLimiter``, with the refusals every implementation gives) is in
``rag_service.ports``; the limiter over Redis, shared by every replica, is an adapter
(``rag_service.adapters.redis_key_limiter.RedisKeyLimiter``). Here: the limiter of one process's
memory, and the one that falls back to it while the shared store is down.
"""

from rag_service.limits.fallback import FallbackKeyLimiter
from rag_service.limits.memory import InMemoryKeyLimiter

__all__ = [
    "FallbackKeyLimiter",
    "InMemoryKeyLimiter",
]
