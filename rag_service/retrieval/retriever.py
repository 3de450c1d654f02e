"""Retrieval: embed a question and find the catalog passages that answer it.

The embedder (a torch model) and Chroma are blocking, so both run in a worker thread; one time
limit covers the two together, because the caller only cares how long it waits for passages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from rag_service.errors import InvalidInput, VectorStoreUnavailable
from rag_service.ports import Embedder, MetadataValue, Passage, PassageSearch
from rag_service.settings import RetrievalSettings

MAX_TOP_K = 50


class Retriever:
    """Finds the passages relevant to one query, best first, above the relevance threshold."""

    def __init__(
        self, embedder: Embedder, search: PassageSearch, settings: RetrievalSettings
    ) -> None:
        self._embedder = embedder
        self._search = search
        self._settings = settings

    @property
    def default_top_k(self) -> int:
        return self._settings.top_k

    @property
    def min_score(self) -> float:
        return self._settings.min_score

    async def retrieve(
        self,
        query: str,
        *,
        top_k: int | None = None,
        filters: Mapping[str, MetadataValue] | None = None,
    ) -> list[Passage]:
        """Passages scoring at least ``min_score``, best first.

        Raises ``VectorStoreUnavailable`` (also when the time limit passes) or
        ``EmbedderUnavailable`` from the adapters; ``InvalidInput`` for a bad ``top_k``.
        """
        k = self.default_top_k if top_k is None else top_k
        if not 1 <= k <= MAX_TOP_K:
            raise InvalidInput(f"top_k must be between 1 and {MAX_TOP_K}, got {k}")
        # An empty filter means "no filter"; Chroma rejects an empty `where`.
        where = dict(filters) if filters else None
        try:
            found = await asyncio.wait_for(
                asyncio.to_thread(self._embed_and_search, query, k, where),
                timeout=self._settings.timeout_s,
            )
        except TimeoutError:
            # The worker thread cannot be interrupted; it finishes on its own and is discarded.
            raise VectorStoreUnavailable(
                "retrieval timed out",
                details={"timeout_s": self._settings.timeout_s},
            ) from None
        relevant = [p for p in found if p.score >= self._settings.min_score]
        relevant.sort(key=lambda p: p.score, reverse=True)
        return relevant

    def _embed_and_search(
        self, query: str, top_k: int, filters: Mapping[str, MetadataValue] | None
    ) -> list[Passage]:
        (vector,) = self._embedder.embed([query])
        return self._search.search(vector, top_k=top_k, filters=filters)
