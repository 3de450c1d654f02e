"""The one way the service talks to Redis (fleet mode's shared state, issue #14): the asyncio
client of ``RAG_REDIS__URL`` and the translation of its failures into the error hierarchy.

Every Redis adapter (per-key limits, and the shared state that follows) takes its client from
``redis_client`` and raises ``unavailable(error)`` for any ``RedisError``, so a Redis that is
down reads the same everywhere: ``StateStoreUnavailable`` (503, retryable), and the URL, which
may hold a password, never reaches a message or a log line.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from rag_service.errors import StateStoreUnavailable
from rag_service.settings import RedisSettings

logger = logging.getLogger(__name__)

__all__ = ["RedisError", "as_text", "redis_client", "unavailable"]


def redis_client(settings: RedisSettings) -> Redis:
    """An asyncio client of ``settings.url`` (which must be set) with its time limits; it
    connects on first use. One retry on a fresh connection: after a Redis restart, the pool's
    old connections fail once."""
    if settings.url is None:
        raise ValueError("RedisSettings.url is not set")
    client: Redis = Redis.from_url(
        settings.url.get_secret_value(),
        socket_connect_timeout=settings.connect_timeout_s,
        socket_timeout=settings.timeout_s,
        retry=Retry(NoBackoff(), 1),
        decode_responses=True,
    )
    return client


def unavailable(error: RedisError) -> StateStoreUnavailable:
    # The class names the failure; its text may name the host, so it stays in our log.
    logger.debug("Redis failed: %r", error)
    return StateStoreUnavailable(
        f"the shared state store (Redis) is unavailable ({type(error).__name__})"
    )


def as_text(value: str | bytes) -> str:
    """A script's reply as text, whether or not the client decodes replies."""
    return value.decode() if isinstance(value, bytes) else value
