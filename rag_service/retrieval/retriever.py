"""Retrieval: embed a question and find the catalog passages that answer it.

The embedder (a torch model) and the store are blocking, so both run in a worker thread; one
time limit covers the two together, because the caller only cares how long it waits for
passages. How passages are found (dense only, or hybrid) is the ``PassageFinder``'s business.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TypeVar

from rag_service.domain import MetadataValue, Passage, Vector
from rag_service.errors import InvalidInput, VectorStoreUnavailable
from rag_service.ports import Embedder
from rag_service.retrieval.catalog_snapshot import SnapshotStats
from rag_service.retrieval.hybrid import PassageFinder
from rag_service.settings import RetrievalSettings

MAX_TOP_K = 50
# Metadata keys of the store's own bookkeeping (versions, hashes); not filterable.
RESERVED_FILTER_PREFIX = "_"
T = TypeVar("T")


class Retriever:
    """Finds the passages relevant to one query, best first, above the relevance threshold."""

    def __init__(
        self, embedder: Embedder, finder: PassageFinder, settings: RetrievalSettings
    ) -> None:
        self._embedder = embedder
        self._finder = finder
        self._settings = settings

    @property
    def default_top_k(self) -> int:
        return self._settings.top_k

    @property
    def min_score(self) -> float:
        return self._settings.min_score

    async def embed(self, query: str) -> Vector:
        """The question's embedding (within the retrieval time limit)."""
        return await self._in_thread(lambda: self._embed(query))

    async def retrieve(
        self,
        query: str,
        *,
        top_k: int | None = None,
        filters: Mapping[str, MetadataValue] | None = None,
        vector: Vector | None = None,
    ) -> list[Passage]:
        """Relevant passages, best first (``vector``: the question's embedding, if known).

        Raises ``VectorStoreUnavailable`` (also when the time limit passes) or
        ``EmbedderUnavailable`` from the adapters; ``InvalidInput`` for a bad ``top_k`` or a
        reserved filter key.
        """
        k = self.default_top_k if top_k is None else top_k
        if not 1 <= k <= MAX_TOP_K:
            raise InvalidInput(f"top_k must be between 1 and {MAX_TOP_K}, got {k}")
        for key in filters or {}:
            if key.startswith(RESERVED_FILTER_PREFIX):
                raise InvalidInput(f"filter key {key!r} is reserved")
        # An empty filter means "no filter"; Chroma rejects an empty `where`.
        where = dict(filters) if filters else None

        def find() -> list[Passage]:
            query_vector = vector if vector is not None else self._embed(query)
            return self._finder.find(query, query_vector, top_k=k, filters=where)

        return await self._in_thread(find)

    def named_documents(self, query: str) -> list[str]:
        """Documents the question names by identifier (SKU); cheap, no store call."""
        return self._finder.named_documents(query)

    def catalog_stats(self) -> SnapshotStats | None:
        """Loads of hybrid retrieval's catalog snapshot, for /metrics (None: dense only)."""
        return self._finder.catalog_stats()

    async def prepare(self) -> None:
        """Load the live catalog's in-memory part (hybrid) before questions need it. No time
        limit: a large catalog may take seconds, and nobody waits on this."""
        await asyncio.to_thread(self._finder.prepare)

    def _embed(self, query: str) -> Vector:
        (vector,) = self._embedder.embed([query])
        return vector

    async def _in_thread(self, work: Callable[[], T]) -> T:
        try:
            return await asyncio.wait_for(asyncio.to_thread(work), timeout=self._settings.timeout_s)
        except TimeoutError:
            # The worker thread cannot be interrupted; it finishes on its own and is discarded.
            raise VectorStoreUnavailable(
                "retrieval timed out",
                details={"timeout_s": self._settings.timeout_s},
            ) from None
