"""The freshness cache: one retrieved context per conversation (contextId), reused while fresh.

A context is *fresh* while it is younger than ``ttl_seconds``, came from the live catalog version,
was retrieved with the same ``top_k`` and filters, and *covers* the new question (it
holds every product the question names by SKU, and its best passage scores at most
``cover_margin`` below the best a retrieval for the question finds); then it is served without searching. A fresh context that does not cover the
question is *extended*: the service retrieves for the question and keeps the merged, re-ranked,
bounded union. Otherwise it is retrieved again (single flight per contextId and question). When
retrieval fails, the last known context is served as *stale* (up to ``stale_max_age_s`` old),
else the configured fallback text. See docs/freshness.md for the whole policy and its numbers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass

from cachetools import LRUCache, TTLCache

from rag_service.domain import ContextState, MetadataValue, Passage, ResolvedContext, Vector
from rag_service.errors import EmbedderUnavailable, VectorStoreUnavailable
from rag_service.ports import CatalogVersionChannel, Clock, PassageSearch, WallClock
from rag_service.retrieval.catalog_version import CatalogVersionWatch
from rag_service.retrieval.context_entries import (
    CachedContext,
    ContextStats,
    RetrievalParams,
    from_shared,
    merged_passages,
    to_shared,
)
from rag_service.retrieval.hybrid import cosine_similarities
from rag_service.retrieval.retriever import Retriever
from rag_service.retrieval.shared_contexts import SharedEntries
from rag_service.retrieval.single_flight import SingleFlight
from rag_service.settings import FreshnessSettings

__all__ = ["ContextService", "ContextStats"]

logger = logging.getLogger(__name__)

RETRIEVAL_FAILURES = (VectorStoreUnavailable, EmbedderUnavailable)
STARTUP_LOAD_WAIT_S = 30.0
# Cosine similarities lie in [-1, 1]: a margin of 2 keeps every fresh context.
MAX_COVER_MARGIN = 2.0


@dataclass(frozen=True)
class _Judgement:
    """Whether a fresh context covers a new question, and what judging it retrieved."""

    covered: bool
    vector: Vector | None = None  # the question's embedding
    found: list[Passage] | None = None  # passages retrieved for the question


class ContextService:
    """Implements the ``ContextResolver`` port with a TTL cache, single flight and fallbacks."""

    def __init__(
        self,
        retriever: Retriever,
        search: PassageSearch,
        settings: FreshnessSettings,
        fallback_text: str,
        clock: Clock = time.monotonic,
        version_check_interval_s: float = 1.0,
        *,
        failure_ttl_s: float = 2.0,
        version_check_timeout_s: float = 2.0,
        catalog_channel: CatalogVersionChannel | None = None,
        shared: SharedEntries | None = None,
        wall_clock: WallClock = time.time,
    ) -> None:
        self._retriever = retriever
        self._settings = settings
        self._fallback_text = fallback_text
        self._clock = clock
        self._fresh: TTLCache[str, CachedContext] = TTLCache(
            maxsize=settings.max_entries, ttl=settings.ttl_seconds, timer=clock
        )
        # Survives TTL expiry and admin invalidation: what stale-if-error serves.
        self._last_known: LRUCache[str, CachedContext] = LRUCache(maxsize=settings.max_entries)
        # Negative cache: a contextId whose retrieval just failed is not retried for a moment.
        self._recent_failures: TTLCache[str, str] = TTLCache(
            maxsize=settings.max_entries, ttl=failure_ttl_s, timer=clock
        )
        self._flight: SingleFlight[tuple[str, RetrievalParams, str], CachedContext | None] = (
            SingleFlight()
        )
        self._versions = CatalogVersionWatch(
            search,
            clock=clock,
            interval_s=version_check_interval_s,
            timeout_s=version_check_timeout_s,
            on_change=self._catalog_changed,
            channel=catalog_channel,
        )
        self._preparing: asyncio.Task[None] | None = None
        # Entries and single flight across replicas (docs/freshness.md, "Several replicas").
        self._shared = shared
        self._wall = wall_clock
        self._stats = ContextStats()
        self._unfiltered = RetrievalParams(top_k=retriever.default_top_k, filters=())

    async def resolve(
        self,
        context_id: str,
        query: str,
        *,
        filters: Mapping[str, MetadataValue] | None = None,
        top_k: int | None = None,
        refresh: bool = False,
    ) -> ResolvedContext:
        """The context for ``query`` in conversation ``context_id``; never raises for an outage.

        Raises only for bad input (``InvalidInput`` from the retriever) or bugs.
        """
        params = self._params(top_k, filters)
        # The last known version: kept current in the background, never a store call here.
        live = self._versions.known
        cached = (
            self._fresh_entry(context_id) if self._shared is None else await self._entry(context_id)
        )
        seen = None if cached is None else cached.retrieved_wall
        if refresh or cached is None or not self._answers(cached, params, live):
            cached = None
        judged = _Judgement(covered=False)
        if cached is not None:
            judged = await self._judge(cached, query, params)
            if judged.covered:
                self._stats.hits += 1
                return self._resolved(context_id, ContextState.fresh, cached)
        self._stats.misses += 1
        if context_id in self._recent_failures:
            self._stats.skipped_after_failure += 1
            return self._degraded(context_id, live)
        key = (context_id, params, query)
        if self._flight.is_running(key):
            self._stats.coalesced += 1
        try:
            entry = await self._flight.run(
                key,
                lambda: self._retrieve_once(context_id, query, params, live, cached, judged, seen),
            )
        except RETRIEVAL_FAILURES:
            return self._degraded(context_id, live)
        if entry is None:
            if cached is not None:
                # Nothing in the catalog for this question: the conversation keeps its context.
                self._stats.hits += 1
                return self._resolved(context_id, ContextState.fresh, cached)
            return self._fallback(context_id, live)
        self._stats.refreshes += 1
        return self._resolved(
            context_id, ContextState.refreshed, entry, extended=cached is not None
        )

    def invalidate(self, context_id: str) -> bool:
        """Drop the fresh context (admin); the last known one stays for stale-if-error."""
        self._recent_failures.pop(context_id, None)
        if self._shared is not None:
            self._shared.delete_soon(context_id)
        return self._fresh.pop(context_id, None) is not None

    def invalidate_all(self) -> int:
        """Drop every fresh context and have the catalog version checked now; returns how many."""
        self._fresh.expire()
        dropped = len(self._fresh)
        self._fresh.clear()
        self._recent_failures.clear()
        self._versions.wake()
        return dropped

    async def start(self) -> None:
        """Learn the live catalog version, then keep it current in the background (the app's
        lifespan calls this; ``aclose`` stops it). Without it, contexts are checked against
        versions only ``catalog_published`` / ``check_catalog_version`` reported."""
        await self._versions.start()
        if self._preparing is not None:
            # The first catalog version is loaded before the service takes questions, as the
            # embedding model is; a load slower than this goes on in the background (questions
            # meanwhile get dense retrieval), and a store that is down leaves it to later.
            await asyncio.wait({self._preparing}, timeout=STARTUP_LOAD_WAIT_S)

    async def check_catalog_version(self) -> int | None:
        """Ask the store for the live version now; the version known afterwards."""
        return await self._versions.refresh()

    def catalog_published(self, version: int) -> None:
        """This process published catalog ``version`` (an admin ingest): contexts of older
        versions are outdated from the next request on."""
        self._versions.published(version)

    def check_catalog_soon(self) -> None:
        """Have the background task check the catalog version now (after a failed ingest, say)."""
        self._versions.wake()

    @property
    def catalog_version(self) -> int | None:
        """The last known live catalog version, without asking the store (None: unknown)."""
        return self._versions.known

    @property
    def shared_entries(self) -> SharedEntries | None:
        """The entries shared with other replicas (None: this process's own only)."""
        return self._shared

    @property
    def catalog_channel(self) -> CatalogVersionChannel:
        """Where catalog publishes are announced across processes (``degraded``: /readyz)."""
        return self._versions.channel

    @property
    def watching_catalog(self) -> bool:
        """Whether the background version checks run (between ``start`` and ``aclose``)."""
        return self._versions.running

    def stats(self) -> ContextStats:
        """A snapshot of the counters."""
        self._fresh.expire()
        return dataclasses.replace(
            self._stats,
            version_checks=self._versions.checks,
            version_check_failures=self._versions.failures,
            entries=len(self._fresh),
            last_known_entries=len(self._last_known),
            in_flight=len(self._flight),
        )

    async def aclose(self) -> None:
        """Cancel retrievals still running and stop the version checks (at shutdown)."""
        await self._flight.aclose()
        await self._versions.aclose()
        if self._shared is not None:
            await self._shared.aclose()
        if self._preparing is not None and not self._preparing.done():
            self._preparing.cancel()

    def _catalog_changed(self, version: int) -> None:
        """A new live version: have the retriever load it (hybrid: its lexical index) now, so
        the next question does not wait for it. One load at a time; a later version is caught
        by the question that needs it."""
        if self._preparing is not None and not self._preparing.done():
            return
        self._preparing = asyncio.get_running_loop().create_task(
            self._prepare(version), name="catalog-prepare"
        )

    async def _prepare(self, version: int) -> None:
        try:
            await self._retriever.prepare()
        except RETRIEVAL_FAILURES as error:
            logger.warning("catalog version %s not loaded ahead (%r)", version, error)
        except Exception:  # a bug here must not go unnoticed, nor end anything else
            logger.exception("loading catalog version %s ahead failed", version)

    async def _judge(
        self, cached: CachedContext, query: str, params: RetrievalParams
    ) -> _Judgement:
        """Whether ``cached`` covers ``query`` (see docs/freshness.md, "Covering a question").

        Covered: the same question; or a context that holds every document the question names
        by identifier (SKU), whose best passage scores at most ``cover_margin`` below the best
        passage a retrieval for the question finds now. Relative, because short follow-ups
        ("and in blue?") match even their own answer weakly: an absolute threshold that
        refreshes topic shifts would refresh most follow-ups too (bench.context_coverage).
        That retrieval's passages are what an extension merges in: nothing is searched twice.
        A failing store or embedder, or passages without embeddings, cannot be judged: the
        context is reused, as before this check.
        """
        if query == cached.query or self._settings.cover_margin >= MAX_COVER_MARGIN:
            return _Judgement(covered=True)
        # A question naming a product by SKU is about that product, however alike it reads.
        named = self._retriever.named_documents(query)
        if named and not set(named) <= {p.doc_id for p in cached.passages}:
            return _Judgement(covered=False)
        vectors = [p.vector for p in cached.passages]
        if not any(v is not None for v in vectors):
            return _Judgement(covered=True)
        self._stats.cover_checks += 1
        self._stats.retrievals += 1
        try:
            vector = await self._retriever.embed(query)
            found = await self._retriever.retrieve(
                query, top_k=params.top_k, filters=params.filter_mapping(), vector=vector
            )
        except RETRIEVAL_FAILURES:
            self._stats.retrieval_failures += 1
            return _Judgement(covered=True)
        if not found:  # nothing in the catalog for it: the conversation keeps its context
            return _Judgement(covered=True)
        held = max(cosine_similarities(vector, vectors))
        best = max(p.score for p in found)
        return _Judgement(held >= best - self._settings.cover_margin, vector, found)

    def _params(
        self, top_k: int | None, filters: Mapping[str, MetadataValue] | None
    ) -> RetrievalParams:
        k = self._retriever.default_top_k if top_k is None else top_k
        if filters:
            return RetrievalParams(top_k=k, filters=tuple(sorted(filters.items())))
        # Most requests ask for the default: one shared object, so entries retrieved for it
        # compare by identity (see _answers) and no RetrievalParams is built per request.
        unfiltered = self._unfiltered
        if unfiltered.top_k != k:
            unfiltered = self._unfiltered = RetrievalParams(top_k=k, filters=())
        return unfiltered

    def _fresh_entry(self, context_id: str) -> CachedContext | None:
        """The fresh entry of ``context_id``, or None when missing or expired."""
        try:
            # One lookup and one clock read; ``TTLCache.get`` costs two of each.
            return self._fresh[context_id]
        except KeyError:
            return None

    @staticmethod
    def _answers(cached: CachedContext, params: RetrievalParams, live: int | None) -> bool:
        # An unknown live version (store never answered) cannot prove a context outdated.
        same_catalog = live is None or cached.catalog_version == live
        return same_catalog and (cached.params is params or cached.params == params)

    async def _retrieve(
        self,
        context_id: str,
        query: str,
        params: RetrievalParams,
        version: int | None,
        extending: CachedContext | None = None,
        judged: _Judgement | None = None,
    ) -> CachedContext | None:
        """One retrieval; stores the result (merged into ``extending``, the fresh context that
        did not cover ``query``, with the passages ``judged`` found already if it did retrieve).
        None: nothing passed the relevance threshold."""
        vector = judged.vector if judged is not None else None
        if judged is not None and judged.found is not None:
            passages = judged.found
        else:
            self._stats.retrievals += 1
            try:
                passages = await self._retriever.retrieve(
                    query, top_k=params.top_k, filters=params.filter_mapping(), vector=vector
                )
            except RETRIEVAL_FAILURES as error:
                self._stats.retrieval_failures += 1
                self._recent_failures[context_id] = error.code
                raise
        if not passages:
            # Not cached: the conversation's next question may well find something.
            return None
        # Tagged with the version known *before* retrieving: if an ingest swapped the catalog
        # meanwhile, the next version check marks this entry outdated (one extra retrieval)
        # instead of serving old passages as current.
        if extending is not None:
            self._stats.extended += 1
            passages = merged_passages(
                passages, extending.passages, vector, self._settings.max_passages
            )
        entry = CachedContext(tuple(passages), self._clock(), version, params, query, self._wall())
        self._fresh[context_id] = entry
        self._last_known[context_id] = entry
        if self._shared is not None:
            await self._shared.put(context_id, to_shared(entry), self._settings.ttl_seconds)
        return entry

    async def _retrieve_once(
        self,
        context_id: str,
        query: str,
        params: RetrievalParams,
        version: int | None,
        extending: CachedContext | None,
        judged: _Judgement,
        seen: float | None,
    ) -> CachedContext | None:
        """``_retrieve``, by one replica for all when the entries are shared: the others take
        the entry it stores (newer than ``seen``, the one this resolve found outdated)."""

        def retrieve() -> Awaitable[CachedContext | None]:
            return self._retrieve(context_id, query, params, version, extending, judged)

        if self._shared is None:
            return await retrieve()

        async def stored_elsewhere() -> CachedContext | None:
            entry = await self._entry(context_id)
            if entry is None or entry.query != query or not self._answers(entry, params, version):
                return None
            if seen is not None and entry.retrieved_wall <= seen:
                return None
            self._fresh[context_id] = entry
            self._last_known[context_id] = entry
            return entry

        name = f"{context_id}\x1f{params.top_k}\x1f{params.filters!r}\x1f{query}"
        entry, joined = await self._shared.run_once(name, retrieve, stored_elsewhere)
        if joined:
            self._stats.coalesced += 1
        return entry

    async def _entry(self, context_id: str) -> CachedContext | None:
        """The fresh entry: the shared one while the store answers, else this process's."""
        assert self._shared is not None
        answered, shared = await self._shared.get(context_id)
        if not answered:
            return self._fresh_entry(context_id)
        if shared is None:
            return None
        params = self._params(shared.top_k, dict(shared.filters))
        return from_shared(shared, params, now=self._clock(), wall_now=self._wall())

    def _resolved(
        self,
        context_id: str,
        state: ContextState,
        entry: CachedContext,
        *,
        extended: bool = False,
    ) -> ResolvedContext:
        return ResolvedContext(
            context_id=context_id,
            state=state,
            passages=entry.passages,
            age_s=max(0.0, self._clock() - entry.retrieved_at),
            catalog_version=entry.catalog_version or 0,
            extended=extended,
        )

    def _degraded(self, context_id: str, live: int | None) -> ResolvedContext:
        """Retrieval failed: the last known context if young enough, else the fallback."""
        last = self._last_known.get(context_id)
        if last is not None:
            if self._clock() - last.retrieved_at <= self._settings.stale_max_age_s:
                self._stats.stale_served += 1
                return self._resolved(context_id, ContextState.stale, last)
            del self._last_known[context_id]
        return self._fallback(context_id, live)

    def _fallback(self, context_id: str, live: int | None) -> ResolvedContext:
        self._stats.fallback_served += 1
        return ResolvedContext(
            context_id=context_id,
            state=ContextState.fallback,
            passages=(),
            age_s=0.0,
            catalog_version=live or 0,
            fallback_text=self._fallback_text,
        )
