"""What the freshness cache holds: a retrieved context (``CachedContext``) and the request it
answers (``RetrievalParams``), their form shared across replicas, the merge of an extended
context, and the cache's counters (``ContextStats``). Used by ``ContextService`` (freshness.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from rag_service.domain import MetadataValue, Passage, SharedContext, Vector
from rag_service.retrieval.hybrid import cosine_similarities

FilterKey = tuple[tuple[str, MetadataValue], ...]


@dataclass(frozen=True)
class RetrievalParams:
    """What a retrieval was asked for; a cached context only answers the same request."""

    top_k: int
    filters: FilterKey

    def filter_mapping(self) -> dict[str, MetadataValue] | None:
        return dict(self.filters) or None


@dataclass(frozen=True)
class CachedContext:
    passages: tuple[Passage, ...]
    retrieved_at: float  # clock time
    catalog_version: int | None  # None: the live version was unknown when retrieving
    params: RetrievalParams
    query: str  # the question it was last retrieved or extended for
    retrieved_wall: float = 0.0  # wall-clock time of the same moment (shared across replicas)


def to_shared(entry: CachedContext) -> SharedContext:
    """``entry`` as the replicas share it (times in wall-clock seconds)."""
    return SharedContext(
        passages=entry.passages,
        retrieved_at=entry.retrieved_wall,
        catalog_version=entry.catalog_version,
        top_k=entry.params.top_k,
        filters=entry.params.filters,
        query=entry.query,
    )


def from_shared(
    shared: SharedContext, params: RetrievalParams, *, now: float, wall_now: float
) -> CachedContext:
    """A shared entry on this process's clock (``now``; ``wall_now`` is the same moment)."""
    age = max(0.0, wall_now - shared.retrieved_at)
    return CachedContext(
        shared.passages,
        now - age,
        shared.catalog_version,
        params,
        shared.query,
        shared.retrieved_at,
    )


@dataclass
class ContextStats:
    """Counters for /metrics. hits + misses = resolves; refreshes + stale + fallback = misses."""

    hits: int = 0  # served fresh from the cache
    extended: int = 0  # fresh contexts that did not cover the question, extended (refreshes)
    cover_checks: int = 0  # fresh contexts judged against a new question (a retrieval each)
    misses: int = 0  # needed retrieval (expired, missing, other version/params, forced refresh)
    refreshes: int = 0  # served state `refreshed`
    stale_served: int = 0
    fallback_served: int = 0
    retrievals: int = 0  # retrievals actually run (single flight: fewer than misses)
    coalesced: int = 0  # resolves that joined a retrieval already running
    retrieval_failures: int = 0
    skipped_after_failure: int = 0  # misses answered from the negative cache, no retrieval
    version_checks: int = 0
    version_check_failures: int = 0  # the store did not answer (the last known version stayed)
    entries: int = 0  # fresh contexts held now
    last_known_entries: int = 0
    in_flight: int = 0  # retrievals running now


def merged_passages(
    new: Sequence[Passage], old: Sequence[Passage], vector: Vector | None, limit: int
) -> list[Passage]:
    """The passages retrieved for the new question (in their order), then the context's earlier
    passages re-scored against the new question, best first; at most ``limit``."""
    ids = {p.id for p in new}
    kept = [p for p in old if p.id not in ids]
    if vector is not None:
        scores = cosine_similarities(vector, [p.vector for p in kept])
        kept = [dataclasses.replace(p, score=s) for p, s in zip(kept, scores, strict=True)]
    kept.sort(key=lambda p: p.score, reverse=True)
    return [*new, *kept][:limit]
