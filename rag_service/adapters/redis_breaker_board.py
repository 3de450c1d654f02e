"""The upstream breakers' shared board on Redis (fleet mode, issue #14): ``BreakerBoard``.

Per upstream (``{prefix}breaker:{hash of its base URL}``):

- ``…:open``: the open state, JSON ``{"open_for_s", "origin"}``, expiring with the open period
  (``PX``), so its remaining time is its ``PTTL`` and an expired one is simply gone;
- ``…:probe``: the half-open probe's claim, ``SET NX PX`` (the replica that holds it; a replica
  that dies holding it blocks the others' probes at most its lease);
- every post is also published on ``{prefix}breaker`` (JSON news) for the replicas listening.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from rag_service.adapters.redis_connection import RedisError, as_text, unavailable
from rag_service.domain import BreakerNews, BreakerState
from rag_service.ports import NewsListener

logger = logging.getLogger(__name__)

LISTEN_POLL_S = 1.0  # one wait for a message: bounds how late a dead connection is noticed


class RedisBreakerBoard:
    """``BreakerBoard`` on Redis keys with expiry and pub/sub."""

    def __init__(self, redis: Redis, *, key_prefix: str) -> None:
        self._redis = redis
        self._prefix = key_prefix
        self._channel = f"{key_prefix}breaker"

    async def post(self, news: BreakerNews) -> None:
        base = self._key(news.upstream)
        message = json.dumps(
            {
                "upstream": news.upstream,
                "state": news.state.value,
                "origin": news.origin,
                "remaining_s": news.remaining_s,
                "open_for_s": news.open_for_s,
            }
        )
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                if news.state is BreakerState.open and news.remaining_s > 0:
                    state = json.dumps({"open_for_s": news.open_for_s, "origin": news.origin})
                    pipe.set(f"{base}:open", state, px=max(1, round(news.remaining_s * 1000)))
                else:
                    pipe.delete(f"{base}:open")
                pipe.delete(f"{base}:probe")  # a verdict ends the probe
                pipe.publish(self._channel, message)
                await pipe.execute()
        except RedisError as error:
            raise unavailable(error) from error

    async def read(self, upstream: str) -> BreakerNews | None:
        key = f"{self._key(upstream)}:open"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(key)
                pipe.pttl(key)
                value, remaining_ms = await pipe.execute()
        except RedisError as error:
            raise unavailable(error) from error
        if value is None or remaining_ms <= 0:
            return None
        state = _decoded(value)
        if state is None:
            return None
        return BreakerNews(
            upstream=upstream,
            state=BreakerState.open,
            origin=str(state.get("origin", "")),
            remaining_s=remaining_ms / 1000,
            open_for_s=float(state.get("open_for_s", remaining_ms / 1000)),
        )

    async def claim_probe(self, upstream: str, holder: str, lease_s: float) -> bool:
        key = f"{self._key(upstream)}:probe"
        try:
            if await self._redis.set(key, holder, nx=True, px=max(1, round(lease_s * 1000))):
                return True
            # Ours already: a probe of this replica was abandoned (cancelled) without a verdict.
            current = await self._redis.get(key)
        except RedisError as error:
            raise unavailable(error) from error
        return current is not None and as_text(current) == holder

    async def listen(self, on_news: NewsListener, on_listening: Callable[[], None]) -> None:
        try:
            async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(self._channel)
                on_listening()
                while True:
                    message = await pubsub.get_message(timeout=LISTEN_POLL_S)
                    _stop_if_cancelled()
                    if message is None:
                        continue
                    news = _news(message.get("data"))
                    if news is not None:
                        on_news(news)
        except RedisError as error:
            raise unavailable(error) from error

    def _key(self, upstream: str) -> str:
        return f"{self._prefix}breaker:{upstream}"


def _decoded(value: object) -> dict[str, Any] | None:
    try:
        decoded = json.loads(as_text(value)) if isinstance(value, str | bytes) else None
    except ValueError:
        decoded = None
    return decoded if isinstance(decoded, dict) else None


def _news(data: object) -> BreakerNews | None:
    fields = _decoded(data)
    try:
        if fields is None:
            raise ValueError("not a JSON object")
        return BreakerNews(
            upstream=str(fields["upstream"]),
            state=BreakerState(fields["state"]),
            origin=str(fields["origin"]),
            remaining_s=float(fields["remaining_s"]),
            open_for_s=float(fields["open_for_s"]),
        )
    except (KeyError, ValueError, TypeError):
        logger.warning("ignored a breaker message that is no breaker news: %.80r", data)
        return None


def _stop_if_cancelled() -> None:
    # redis-py's get_message runs its wait under a timeout that can take a cancellation that
    # lands as the wait times out for its own: the listener would then never stop.
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
