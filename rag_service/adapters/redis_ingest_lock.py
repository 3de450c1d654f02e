"""The cluster-wide ingest lock in Redis (fleet mode): one ingest at a time across every host,
where the lock file (``StoreLock``) keeps ingests apart on one host only.

``{prefix}ingest-lock`` holds ``{"token", "holder", "since"}`` as JSON, set with ``SET NX PX``
(the lease, ``RAG_INGEST__LOCK_LEASE_S``). The holder renews the lease every third of it while
its ingest runs and deletes the key when done; both go through scripts that act only while the
key still holds the holder's own value, so a holder whose lease ran out can neither extend nor
release the next holder's lock. A holder that dies stops renewing: the others are blocked at
most one lease. A second ingest meanwhile gets ``IngestInProgress`` (409) naming the holder.

``ingest_lock_across_hosts`` is the same lock for ``rag-service ingest``, a process without an
event loop of its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from redis.asyncio import Redis

from rag_service.adapters.redis_connection import RedisError, as_text, redis_client, unavailable
from rag_service.cancellation import cancel_until_done
from rag_service.errors import IngestInProgress, StateStoreUnavailable
from rag_service.settings import Settings

logger = logging.getLogger(__name__)

RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
RENEWALS_PER_LEASE = 3

T = TypeVar("T")


class RedisIngestLock:
    """``ClusterIngestLock`` on Redis; ``holder`` names this process in a refusal elsewhere."""

    def __init__(self, redis: Redis, *, key_prefix: str, holder: str, lease_s: float) -> None:
        self._redis = redis
        self.key = f"{key_prefix}ingest-lock"
        self._holder = holder
        self._lease_ms = max(1, round(lease_s * 1000))
        self._renew = redis.register_script(RENEW_SCRIPT)
        self._release = redis.register_script(RELEASE_SCRIPT)

    async def acquire(self) -> RedisIngestLease:
        """The lock, renewed until released; ``IngestInProgress`` while another process holds
        it, ``StateStoreUnavailable`` when Redis does not answer."""
        value = json.dumps(
            {"token": secrets.token_hex(16), "holder": self._holder, "since": time.time()}
        )
        try:
            taken = await self._redis.set(self.key, value, nx=True, px=self._lease_ms)
            current = None if taken else await self._redis.get(self.key)
        except RedisError as error:
            raise unavailable(error) from error
        if not taken:
            holder = _holder_of(None if current is None else as_text(current))
            raise IngestInProgress(
                f"another ingest is running ({holder}); wait for it to finish "
                f"(cluster-wide lock: Redis key {self.key})"
            )
        return RedisIngestLease(self, value)

    async def renew(self, value: str) -> bool:
        """Extend the lease of ``value``; False when the key no longer holds it."""
        try:
            return bool(await self._renew(keys=[self.key], args=[value, self._lease_ms]))
        except RedisError as error:
            raise unavailable(error) from error

    async def release(self, value: str) -> None:
        try:
            await self._release(keys=[self.key], args=[value])
        except RedisError as error:
            raise unavailable(error) from error

    @property
    def renew_interval_s(self) -> float:
        return self._lease_ms / 1000 / RENEWALS_PER_LEASE


class RedisIngestLease:
    """One holding of the lock: renewed in the background until ``release``."""

    def __init__(self, lock: RedisIngestLock, value: str) -> None:
        self._lock = lock
        self._value = value
        self._renewing = asyncio.get_running_loop().create_task(
            self._keep(), name="ingest-lock-renewal"
        )

    async def release(self) -> None:
        """Stop renewing and delete the key if it is still this holding's; a Redis that does
        not answer is logged (the lease then runs out on its own)."""
        # Again and again: a renewal that took its cancellation while sending its command
        # would renew on (rag_service.cancellation), and this release wait for it forever.
        await cancel_until_done(lambda: (self._renewing,))
        try:
            await self._lock.release(self._value)
        except StateStoreUnavailable as error:
            logger.warning(
                "cluster-wide ingest lock not released (%s); it expires within its lease",
                error.message,
            )

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self._lock.renew_interval_s)
            try:
                held = await self._lock.renew(self._value)
            except StateStoreUnavailable as error:  # tried again at the next interval
                logger.warning("cluster-wide ingest lock not renewed: %s", error.message)
                continue
            if not held:
                logger.error(
                    "cluster-wide ingest lock lost: its lease ran out before it was renewed "
                    "(Redis unreachable for longer than RAG_INGEST__LOCK_LEASE_S?); another "
                    "ingest may start before this one ends"
                )
                return


def _holder_of(raw: str | None) -> str:
    if raw is None:  # released just now
        return "a holder that has just finished"
    try:
        holder = json.loads(raw).get("holder")
    except (ValueError, AttributeError):
        holder = None
    return str(holder) if holder else "an unknown holder"


@contextmanager
def ingest_lock_across_hosts(settings: Settings) -> Iterator[None]:
    """The cluster-wide ingest lock for the block, from a process without an event loop
    (``rag-service ingest``): its own loop runs in a thread and renews the lease. Without
    ``RAG_REDIS__URL``, nothing. A Redis that does not answer is logged: the ingest then runs
    under the host's lock file only."""
    if settings.redis.url is None:
        yield
        return
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="ingest-lock", daemon=True)
    thread.start()

    def run(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    redis = redis_client(settings.redis)
    try:
        lock = RedisIngestLock(
            redis,
            key_prefix=settings.redis.key_prefix,
            holder=f"rag-service ingest on {socket.gethostname()}, pid {os.getpid()}",
            lease_s=settings.ingest.lock_lease_s,
        )
        lease = run(_acquire(lock))
        try:
            yield
        finally:
            if lease is not None:
                run(lease.release())
    finally:
        run(redis.aclose())
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


async def _acquire(lock: RedisIngestLock) -> RedisIngestLease | None:
    try:
        return await lock.acquire()
    except StateStoreUnavailable as error:
        _log_unshared(error)
        return None


def _log_unshared(error: StateStoreUnavailable) -> None:
    logger.warning(
        "ingest under this host's lock file only: the cluster-wide ingest lock is unavailable "
        "(%s), so an ingest started on another host meanwhile is not kept apart",
        error.message,
    )
