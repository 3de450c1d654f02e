"""The ports of the freshness cache: how an answer finds its context (``ContextResolver``),
where the replicas share the contexts they retrieved (``ContextStore``: ``InProcessContextStore``
in ``rag_service.retrieval``, ``RedisContextStore`` in ``rag_service.adapters``), and the clocks
injected everywhere so that tests control time."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from rag_service.domain import MetadataValue, ResolvedContext, SharedContext

# Wall-clock seconds (``time.time``): what replicas compare, as monotonic clocks of different
# hosts do not compare.
WallClock = Callable[[], float]


class Clock(Protocol):
    """Monotonic seconds; tests pass a controllable one."""

    def __call__(self) -> float: ...


class ContextResolver(Protocol):
    """Finds the context for one question in a conversation (freshness cache + retrieval)."""

    async def resolve(
        self,
        context_id: str,
        query: str,
        *,
        filters: Mapping[str, MetadataValue] | None = None,
        top_k: int | None = None,
        refresh: bool = False,
    ) -> ResolvedContext: ...

    def invalidate(self, context_id: str) -> bool:
        """Drop one context; True when it was cached."""
        ...


class ContextStore(Protocol):
    """Shared freshness-cache entries and retrieval locks. Every method raises
    ``StateStoreUnavailable`` when the store is down."""

    async def get(self, context_id: str) -> SharedContext | None: ...

    async def put(self, context_id: str, context: SharedContext, ttl_s: float) -> None:
        """Store ``context`` for ``ttl_s`` seconds (replacing the one there)."""
        ...

    async def delete(self, context_id: str) -> bool: ...

    async def try_lock(self, name: str, token: str, lease_s: float) -> bool:
        """Take lock ``name`` for ``lease_s`` unless another token holds it."""
        ...

    async def unlock(self, name: str, token: str) -> None:
        """Release lock ``name`` if ``token`` still holds it."""
        ...

    async def put_nothing_found(self, name: str, at: float, ttl_s: float) -> None:
        """Note for ``ttl_s`` that the work under lock ``name`` found nothing at wall time
        ``at`` (replacing an earlier note)."""
        ...

    async def nothing_found_at(self, name: str) -> float | None:
        """The wall time of the note ``put_nothing_found`` left for ``name``, None if none."""
        ...
