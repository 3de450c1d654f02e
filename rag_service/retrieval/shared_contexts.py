"""Freshness-cache entries shared by the replicas, and one retrieval per stale context across
them (fleet mode, issue #14).

``ContextService`` keeps its entries in a ``ContextStore`` (a port) when one is given: every replica
serving a conversation sees the context any replica retrieved, for the same TTL. A retrieval
is claimed with a short lock with expiry (``try_lock``): the replica holding it retrieves and
stores the entry; the others wait for that entry (polling), at most the lock's lease, then
retrieve themselves. A holder that crashes blocks nobody past the lease.

A retrieval that finds nothing stores no entry (the conversation's next question may find
something), so its holder leaves a short-lived note instead (``put_nothing_found``, for the
lock's lease): the replicas that were waiting for that very retrieval end with "nothing found"
at once, as requests coalesced in one process do, instead of retrieving again. A request that
comes after it ended retrieves again, as in one process.

``InProcessContextStore`` holds them in this process (several ``ContextService`` objects of one
process then behave as replicas); ``RedisContextStore`` (rag_service/adapters/
redis_context_store.py) holds them in Redis. Times are wall-clock seconds here: monotonic clocks
of different hosts do not compare.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from rag_service.domain import SharedContext
from rag_service.errors import StateStoreUnavailable
from rag_service.ports import ContextStore, WallClock

logger = logging.getLogger(__name__)


class InProcessContextStore:
    """``ContextStore`` in this process's memory (expiry by ``wall_clock``)."""

    def __init__(self, wall_clock: WallClock = time.time) -> None:
        self._clock = wall_clock
        self._entries: dict[str, tuple[SharedContext, float]] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._nothing_found: dict[str, tuple[float, float]] = {}  # name: (at, expiry)

    async def get(self, context_id: str) -> SharedContext | None:
        found = self._entries.get(context_id)
        if found is None or found[1] <= self._clock():
            self._entries.pop(context_id, None)
            return None
        return found[0]

    async def put(self, context_id: str, context: SharedContext, ttl_s: float) -> None:
        self._entries[context_id] = (context, self._clock() + ttl_s)

    async def delete(self, context_id: str) -> bool:
        return self._entries.pop(context_id, None) is not None

    async def try_lock(self, name: str, token: str, lease_s: float) -> bool:
        held = self._locks.get(name)
        if held is not None and held[1] > self._clock():
            return False
        self._locks[name] = (token, self._clock() + lease_s)
        return True

    async def unlock(self, name: str, token: str) -> None:
        held = self._locks.get(name)
        if held is not None and held[0] == token:
            del self._locks[name]

    async def put_nothing_found(self, name: str, at: float, ttl_s: float) -> None:
        self._nothing_found[name] = (at, self._clock() + ttl_s)

    async def nothing_found_at(self, name: str) -> float | None:
        found = self._nothing_found.get(name)
        if found is None or found[1] <= self._clock():
            self._nothing_found.pop(name, None)
            return None
        return found[0]


T = TypeVar("T")
LOCK_POLL_S = 0.02  # how often a replica waiting for another's retrieval looks for its entry


class SharedEntries:
    """``ContextService``'s use of a ``ContextStore``, with the "Redis down" rule: while the
    store fails, the service works on its own cache as a single process does (``degraded``,
    ``fallbacks`` counted), and tries the store again every ``retry_interval_s``."""

    def __init__(
        self,
        store: ContextStore,
        *,
        ttl_s: float,
        lock_s: float,
        retry_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: WallClock = time.time,
    ) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._lock_s = lock_s
        self._retry_interval_s = retry_interval_s
        self._clock = clock
        self._wall = wall_clock
        self._retry_at: float | None = None  # set while the store is down
        self._tasks: set[asyncio.Task[None]] = set()
        self.fallbacks = 0
        self.waiting = 0  # run_once calls waiting for another replica's work now

    @property
    def degraded(self) -> bool:
        return self._retry_at is not None

    @property
    def active(self) -> bool:
        """Whether to use the store now (up, or due for another try)."""
        return self._retry_at is None or self._clock() >= self._retry_at

    async def get(self, context_id: str) -> tuple[bool, SharedContext | None]:
        """(answered, entry): ``answered`` False means: use this process's own cache."""
        if not self.active:
            self.fallbacks += 1
            return False, None
        try:
            found = await self._store.get(context_id)
        except StateStoreUnavailable as error:
            self._failed(error)
            return False, None
        self._answered()
        return True, found

    async def put(self, context_id: str, context: SharedContext, ttl_s: float) -> None:
        if not self.active:
            self.fallbacks += 1
            return
        try:
            await self._store.put(context_id, context, min(ttl_s, self._ttl_s))
        except StateStoreUnavailable as error:
            self._failed(error)
        else:
            self._answered()

    def delete_soon(self, context_id: str) -> None:
        """Drop the shared entry (in the background: callers are synchronous)."""
        task = asyncio.get_running_loop().create_task(self._delete(context_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run_once(
        self,
        name: str,
        work: Callable[[], Awaitable[T | None]],
        done_elsewhere: Callable[[], Awaitable[T | None]],
    ) -> tuple[T | None, bool]:
        """``work`` unless another replica is doing it: (its result, False); or (what
        ``done_elsewhere`` found once that replica stored it, True). ``work`` returning None
        found nothing: the replicas waiting for it get (None, True). A replica waits at most
        the lock's lease, then does the work itself; a store that fails means: work alone."""
        if not self.active:
            self.fallbacks += 1
            return await work(), False
        token = secrets.token_hex(8)
        waiting_since: float | None = None  # wall time this replica first found the lock held
        locked = False
        try:
            async with asyncio.timeout(self._lock_s):
                while not await self._store.try_lock(name, token, self._lock_s):
                    if waiting_since is None:
                        waiting_since = self._wall()
                        self.waiting += 1
                    found = await done_elsewhere()
                    if found is not None:
                        return found, True
                    if await self._found_nothing(name, waiting_since):
                        return None, True
                    if self.degraded:  # the store failed while we waited
                        break
                    await asyncio.sleep(LOCK_POLL_S)
                else:
                    locked = True
        except TimeoutError:  # the holder took its whole lease (or died): do it ourselves
            pass
        except StateStoreUnavailable as error:
            self._failed(error)
        finally:
            if waiting_since is not None:
                self.waiting -= 1
        if not locked:
            return await work(), False
        try:
            # The lock was free: a holder may have just stored the result (or found nothing)
            # and released it, between this replica's last look and now.
            found = await done_elsewhere()
            if found is not None:
                return found, True
            if waiting_since is not None and await self._found_nothing(name, waiting_since):
                return None, True
            result = await work()
            if result is None:  # before the release: a waiter that then takes the lock sees it
                await self._put_nothing_found(name)
            return result, False
        finally:
            await self._release(name, token)

    async def aclose(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _found_nothing(self, name: str, since: float) -> bool:
        """Whether the work under ``name`` found nothing at ``since`` or later: a note older
        than this replica's wait is of an earlier run, which a later request does again."""
        try:
            at = await self._store.nothing_found_at(name)
        except StateStoreUnavailable as error:
            self._failed(error)
            return False
        return at is not None and at >= since

    async def _put_nothing_found(self, name: str) -> None:
        try:
            await self._store.put_nothing_found(name, self._wall(), self._lock_s)
        except StateStoreUnavailable as error:
            self._failed(error)  # the waiters do the work themselves once the lock is free

    async def _release(self, name: str, token: str) -> None:
        try:
            await self._store.unlock(name, token)
        except StateStoreUnavailable as error:
            self._failed(error)  # the lock lapses with its lease

    async def _delete(self, context_id: str) -> None:
        try:
            await self._store.delete(context_id)
        except StateStoreUnavailable as error:
            self._failed(error)

    def _failed(self, error: StateStoreUnavailable) -> None:
        self.fallbacks += 1
        if self._retry_at is None:
            logger.warning(
                "freshness cache falls back to this process's own entries: %s", error.message
            )
        self._retry_at = self._clock() + self._retry_interval_s

    def _answered(self) -> None:
        if self._retry_at is not None:
            self._retry_at = None
            logger.warning("freshness cache is shared again: the state store answers")
