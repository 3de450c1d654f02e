"""How passages are found for a question: dense only, or hybrid (identifiers, dense, lexical).

Hybrid, for one question at the live catalog version V:

1. **Exact identifiers**: the documents the question names by SKU or model number, in any
   spelling (``rag_service.retrieval.identifiers``), first.
2. **Dense**: the ``candidates`` records nearest to the question's embedding at V.
3. **Lexical**: the ``candidates`` best BM25 records of V's lexical index.
4. **Fusion**: dense and lexical ranks merged by reciprocal rank fusion,
   ``score = dense_weight / (rrf_k + dense_rank) + lexical_weight / (rrf_k + lexical_rank)``
   (Cormack et al., 2009; Open WebUI and RAGFlow do the same), after the exact matches.
5. **Relevance**: every passage keeps its cosine similarity to the question as its score, and a
   passage below ``min_score`` is dropped unless the question named it by identifier; then the
   first ``top_k``.

The dense step asks Chroma for ids only (the snapshot holds the texts) and, without metadata
filters, without the version filter: it fetches twice as many and keeps those visible at V,
which is exact whenever enough of them are (else it asks again with the filter). Both cut Chroma's
share of a query from 4-17 ms to 1-2 ms (``docs/retrieval.md``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np

from rag_service.domain import CatalogRecord, Filters, MetadataValue, Passage, Vector
from rag_service.ports import CatalogStore, LexicalIndex, PassageSearch
from rag_service.retrieval.catalog_snapshot import CatalogSnapshot, CatalogSnapshots, SnapshotStats
from rag_service.settings import RetrievalSettings

# With metadata filters, the lexical ranking is filtered after the search: ask for more.
FILTERED_LEXICAL_FACTOR = 5


class PassageFinder(Protocol):
    """Finds the passages for one question (blocking: the retriever runs it in a thread)."""

    def find(self, query: str, vector: Vector, *, top_k: int, filters: Filters) -> list[Passage]:
        """Relevant passages, best first, at most ``top_k``."""
        ...

    def prepare(self) -> None:
        """Load what the live catalog needs in memory ahead of the first question."""
        ...

    def named_documents(self, query: str) -> list[str]:
        """Documents the question names by identifier (SKU), from what is loaded already:
        no store call. Empty when identifiers are not tracked (dense only)."""
        ...

    def catalog_stats(self) -> SnapshotStats | None:
        """Loads of the in-memory catalog snapshot (None: dense only keeps none)."""
        ...


def passage_finder(
    store: CatalogStore,
    settings: RetrievalSettings,
    new_lexical_index: Callable[[], LexicalIndex],
) -> PassageFinder:
    """The finder ``settings.mode`` asks for."""
    if settings.mode == "dense":
        return DenseSearch(store, settings)
    return HybridSearch(store, CatalogSnapshots(store, new_lexical_index), settings)


class DenseSearch:
    """The vector search alone, as before hybrid retrieval (``RAG_RETRIEVAL__MODE=dense``)."""

    def __init__(self, search: PassageSearch, settings: RetrievalSettings) -> None:
        self._search = search
        self._settings = settings

    def find(self, query: str, vector: Vector, *, top_k: int, filters: Filters) -> list[Passage]:
        found = self._search.search(vector, top_k=top_k, filters=filters)
        relevant = [p for p in found if p.score >= self._settings.min_score]
        relevant.sort(key=lambda p: p.score, reverse=True)
        return relevant

    def prepare(self) -> None:
        return None

    def named_documents(self, query: str) -> list[str]:
        return []

    def catalog_stats(self) -> SnapshotStats | None:
        return None


class HybridSearch:
    """Exact identifiers, then dense and lexical rankings fused by reciprocal rank."""

    def __init__(
        self, store: CatalogStore, snapshots: CatalogSnapshots, settings: RetrievalSettings
    ) -> None:
        self._store = store
        self._snapshots = snapshots
        self._settings = settings
        self._dense_only = DenseSearch(store, settings)

    def prepare(self) -> None:
        catalog = self._store.live_catalog()
        if catalog.version > 0:
            self._snapshots.current(catalog)

    def named_documents(self, query: str) -> list[str]:
        snapshot = self._snapshots.latest
        return snapshot.identifiers.exact_documents(query) if snapshot is not None else []

    def catalog_stats(self) -> SnapshotStats | None:
        return dataclasses.replace(self._snapshots.stats)

    def find(self, query: str, vector: Vector, *, top_k: int, filters: Filters) -> list[Passage]:
        catalog = self._store.live_catalog()
        if catalog.version == 0:
            return []
        snapshot = self._snapshots.unless_loading(catalog)
        if snapshot is None and self._snapshots.latest is None:
            # Another thread is loading the first catalog version of this process (seconds for
            # a large catalog): answer from the vector search alone rather than wait.
            self._snapshots.stats.dense_only_answers += 1
            return self._dense_only.find(query, vector, top_k=top_k, filters=filters)
        if snapshot is None:  # following a new version by its changes: milliseconds
            snapshot = self._snapshots.current(catalog)
        wanted = dict(filters or {})
        candidates = max(self._settings.candidates, top_k)
        exact = [
            record_id
            for doc_id in snapshot.identifiers.exact_documents(query)
            for record_id in snapshot.document_records.get(doc_id, ())
            if _matches(snapshot.records[record_id], wanted)
        ]
        dense = self._dense(snapshot, vector, candidates, wanted)
        lexical_n = candidates * (FILTERED_LEXICAL_FACTOR if wanted else 1)
        lexical = [
            record_id
            for record_id in snapshot.lexical.search(query, n=lexical_n)
            if record_id in snapshot.records and _matches(snapshot.records[record_id], wanted)
        ][:candidates]
        fused = reciprocal_rank_fusion(
            [(dense, self._settings.dense_weight), (lexical, self._settings.lexical_weight)],
            k=self._settings.rrf_k,
        )
        pinned = set(exact)
        ranked = exact + [record_id for record_id in fused if record_id not in pinned]
        vectors = self._store.vectors(catalog, ranked)
        scores = cosine_similarities(vector, [vectors.get(record_id) for record_id in ranked])
        passages = []
        for record_id, score in zip(ranked, scores, strict=True):
            if record_id in pinned or score >= self._settings.min_score:
                passage = snapshot.records[record_id].passage(score, vectors.get(record_id))
                passages.append(passage)
            if len(passages) == top_k:
                break
        return passages

    def _dense(
        self,
        snapshot: CatalogSnapshot,
        vector: Vector,
        candidates: int,
        filters: Mapping[str, MetadataValue],
    ) -> list[str]:
        catalog = snapshot.catalog
        if not filters:
            nearest = self._store.nearest_any_version(catalog, vector, 2 * candidates)
            visible = [record_id for record_id in nearest if record_id in snapshot.records]
            # Complete when enough are visible, or when the collection holds no more records.
            if len(visible) >= candidates or len(nearest) < 2 * candidates:
                return visible[:candidates]
        found = self._store.nearest(catalog, vector, candidates, filters or None)
        return [record_id for record_id in found if record_id in snapshot.records]


def reciprocal_rank_fusion(rankings: Sequence[tuple[Sequence[str], float]], *, k: int) -> list[str]:
    """Ids ordered by ``sum(weight / (k + rank))`` over the rankings holding them (rank from
    1); ties keep the order of first appearance."""
    scores: dict[str, float] = {}
    for ranking, weight in rankings:
        if weight <= 0:
            continue
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores, key=lambda item: scores[item], reverse=True)


def _matches(record: CatalogRecord, filters: Mapping[str, MetadataValue]) -> bool:
    return all(record.metadata.get(key) == value for key, value in filters.items())


def cosine_similarities(
    vector: Sequence[float], others: Sequence[Sequence[float] | None]
) -> list[float]:
    """Cosine similarity of ``vector`` to each of ``others`` (0.0 where one is missing),
    rounded as the store rounds its scores."""
    present = [i for i, other in enumerate(others) if other is not None]
    scores = [0.0] * len(others)
    if not present:
        return scores
    matrix = np.asarray([others[i] for i in present], dtype=np.float64)
    query = np.asarray(vector, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(query)
    dots = matrix @ query
    for i, dot, norm in zip(present, dots, norms, strict=True):
        scores[i] = round(float(dot / norm), 4) if norm else 0.0
    return scores
