"""Catalog publishes announced over Redis pub/sub, so that every replica adopts a new catalog
version on the message rather than at its next background check (fleet mode, issue #14).

One channel, ``{key_prefix}catalog:version``; a message is the version number. Pub/sub keeps
nothing: a replica that is not listening when a version is announced misses it, and learns it
from its own background check of the store (``RAG_FRESHNESS__CATALOG_CHECK_INTERVAL_S``), which
stays on. A replica that listens again after an outage asks the store at once (``on_resync``).

While Redis is down the channel is ``degraded``: announcements are not sent (counted in
``fallbacks``), listening is retried every ``retry_interval_s``; nothing else changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis

from rag_service.adapters.redis_connection import RedisError, as_text, redis_client, unavailable
from rag_service.errors import StateStoreUnavailable
from rag_service.ports import ResyncListener, VersionListener
from rag_service.settings import RedisSettings

logger = logging.getLogger(__name__)

CHANNEL = "catalog:version"
# How long one wait for a message lasts: bounds how late a dead connection is noticed.
LISTEN_POLL_S = 1.0
# ``start`` waits at most this for the subscription (longer: listening goes on in the background).
SUBSCRIBE_WAIT_S = 5.0


class RedisCatalogChannel:
    """``CatalogVersionChannel`` on Redis pub/sub."""

    def __init__(self, redis: Redis, *, key_prefix: str, retry_interval_s: float) -> None:
        self._redis = redis
        self._channel = f"{key_prefix}{CHANNEL}"
        self._retry_interval_s = retry_interval_s
        self._listening: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._down: StateStoreUnavailable | None = None  # set while Redis fails
        self.sent = 0
        self.received = 0
        self.fallbacks = 0  # announcements not sent and subscriptions lost while Redis was down

    @property
    def degraded(self) -> bool:
        return self._down is not None

    async def start(self, on_version: VersionListener, on_resync: ResyncListener) -> None:
        if self._listening is not None:
            return
        self._listening = asyncio.get_running_loop().create_task(
            self._listen(on_version, on_resync), name="catalog-channel"
        )
        # Listening before the service takes requests, so no announcement after start-up is
        # missed; a Redis that is down leaves the retries to the background.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SUBSCRIBE_WAIT_S):
                await self._subscribed.wait()

    async def announce(self, version: int) -> None:
        try:
            await self._redis.publish(self._channel, str(version))
        except RedisError as error:
            self.fallbacks += 1
            raise unavailable(error) from error
        self.sent += 1

    async def aclose(self) -> None:
        if self._listening is not None and not self._listening.done():
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listening

    async def _listen(self, on_version: VersionListener, on_resync: ResyncListener) -> None:
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    self._listening_again(on_resync)
                    while True:
                        message = await pubsub.get_message(timeout=LISTEN_POLL_S)
                        _stop_if_cancelled()
                        if message is not None:
                            self._deliver(message.get("data"), on_version)
            except RedisError as error:
                self._lost(unavailable(error))
            self._subscribed.set()  # start() need not wait for a Redis that is down
            await asyncio.sleep(self._retry_interval_s)

    def _listening_again(self, on_resync: ResyncListener) -> None:
        self._subscribed.set()
        if self._down is None:
            return
        self._down = None
        logger.warning("catalog announcements are received again (Redis answers)")
        on_resync()  # versions announced meanwhile were missed: ask the store now

    def _lost(self, error: StateStoreUnavailable) -> None:
        self.fallbacks += 1
        if self._down is None:
            logger.warning(
                "catalog announcements are not received (%s); the background version checks "
                "go on alone",
                error.message,
            )
        self._down = error

    def _deliver(self, data: object, on_version: VersionListener) -> None:
        try:
            version = int(as_text(data)) if isinstance(data, str | bytes) else -1
        except ValueError:
            version = -1
        if version < 0:
            logger.warning("ignored a catalog announcement that is no version: %.40r", data)
            return
        self.received += 1
        on_version(version)


def announce_catalog_version(settings: RedisSettings, version: int) -> bool:
    """Announce ``version`` from a process without an event loop (``rag-service ingest``);
    False when Redis did not take it (the replicas then notice at their next check)."""

    async def send() -> None:
        redis = redis_client(settings)
        try:
            channel = RedisCatalogChannel(
                redis, key_prefix=settings.key_prefix, retry_interval_s=settings.retry_interval_s
            )
            await channel.announce(version)
        finally:
            await redis.aclose()

    try:
        asyncio.run(send())
    except StateStoreUnavailable as error:
        logger.warning(
            "catalog version %s not announced to the replicas (%s); they notice it at their "
            "next background check",
            version,
            error.message,
        )
        return False
    return True


def _stop_if_cancelled() -> None:
    # redis-py's get_message runs its wait under a timeout that can take a cancellation that
    # lands as the wait times out for its own: the listener would then never stop.
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
