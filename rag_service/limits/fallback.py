"""Per-key limits on shared state while it answers, on this process's own state while it does
not (issue #14's "Redis down" rule: keep serving, degraded, and come back on its own).

While the shared store is down, each process grants a key its full limits, as a single process
does: the limits are per process, not per deployment, for that time. Slots admitted locally are
released locally; slots held in the store before the outage lapse there with their leases. When
the store answers again, new admissions go to it; streams admitted locally meanwhile are not
counted there (the over-admission is bounded by them, and ends as they end).

The store is not asked on every request while down: after a failure, the next try comes
``retry_interval_s`` later, so an outage costs one store time-out per interval, not one per
request.
"""

from __future__ import annotations

import logging
import time

from rag_service.domain import KeyLimitStats
from rag_service.errors import StateStoreUnavailable
from rag_service.ports import Clock, KeyLimiter, StreamSlot

logger = logging.getLogger(__name__)


class FallbackKeyLimiter:
    """``KeyLimiter`` that admits through ``shared`` and, while it raises
    ``StateStoreUnavailable``, through ``local``; ``degraded`` says which holds now (for
    ``/readyz``), ``stats().fallbacks`` counts the local admissions."""

    def __init__(
        self,
        shared: KeyLimiter,
        local: KeyLimiter,
        *,
        retry_interval_s: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._shared = shared
        self._local = local
        self._retry_interval_s = retry_interval_s
        self._clock = clock
        self._retry_at: float | None = None  # set while the shared store is down
        self._fallbacks = 0

    @property
    def degraded(self) -> bool:
        """True from a failure of the shared store until it answers again."""
        return self._retry_at is not None

    async def admit(self, key_id: str) -> StreamSlot:
        now = self._clock()
        if self._retry_at is None or now >= self._retry_at:
            try:
                slot = await self._shared.admit(key_id)
            except StateStoreUnavailable as error:
                if self._retry_at is None:
                    logger.warning(
                        "per-key limits fall back to this process's own state: %s", error.message
                    )
                self._retry_at = now + self._retry_interval_s
            else:
                if self._retry_at is not None:
                    logger.warning("per-key limits are shared again: the state store answers")
                    self._retry_at = None
                return slot
        self._fallbacks += 1
        return await self._local.admit(key_id)

    def stats(self) -> KeyLimitStats:
        shared, local = self._shared.stats(), self._local.stats()
        return KeyLimitStats(
            refused_streams=shared.refused_streams + local.refused_streams,
            refused_rate=shared.refused_rate + local.refused_rate,
            keys_tracked=local.keys_tracked,
            fallbacks=self._fallbacks,
        )
