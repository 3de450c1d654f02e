"""The live catalog version, asked of the store at most once per interval.

Every request needs to know whether its cached context still belongs to the live catalog, but a
store round trip per request would defeat the cache. So the version is remembered and asked
again only when the interval has passed; requests arriving while a check runs share it. A check
that fails (store down, too slow) keeps the remembered version: a cached context is better than
none, and retrieval would fail against the same store anyway.
"""

from __future__ import annotations

import asyncio
import logging

from rag_service.errors import VectorStoreUnavailable
from rag_service.ports import Clock, PassageSearch
from rag_service.retrieval.single_flight import SingleFlight

logger = logging.getLogger(__name__)


class CatalogVersionWatch:
    """Remembers the live catalog version; re-checks it at most every ``interval_s``."""

    def __init__(
        self,
        search: PassageSearch,
        *,
        clock: Clock,
        interval_s: float,
        timeout_s: float,
    ) -> None:
        self._search = search
        self._clock = clock
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._version: int | None = None
        self._checked_at: float | None = None
        self._flight: SingleFlight[str, int | None] = SingleFlight()
        self.checks = 0
        self.failures = 0

    @property
    def known(self) -> int | None:
        """The remembered version without asking the store (None: never learned)."""
        return self._version

    def is_due(self) -> bool:
        if self._flight.is_running("version"):
            return True
        return self._checked_at is None or self._clock() - self._checked_at >= self._interval_s

    async def current(self) -> int | None:
        """The live version, asking the store only when the interval has passed."""
        if not self.is_due():
            return self._version
        return await self._flight.run("version", self._check)

    def forget(self) -> None:
        """Ask the store on the next call (after an ingest swapped the catalog, say)."""
        self._checked_at = None

    async def aclose(self) -> None:
        await self._flight.aclose()

    async def _check(self) -> int | None:
        # Stamp the attempt first: a failing store is asked again only after the interval too.
        self._checked_at = self._clock()
        self.checks += 1
        try:
            version = await asyncio.wait_for(
                asyncio.to_thread(self._search.live_version), timeout=self._timeout_s
            )
        except (VectorStoreUnavailable, TimeoutError) as error:
            self.failures += 1
            logger.warning(
                "catalog version check failed (%s); keeping version %s", error, self._version
            )
            return self._version
        if version != self._version:
            logger.info("live catalog version is now %s (was %s)", version, self._version)
        self._version = version
        return version
