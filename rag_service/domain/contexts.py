"""The context an answer is grounded in, how the freshness cache obtained it, and how the
replicas share it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from rag_service.domain.catalog import MetadataValue, Passage


class ContextState(StrEnum):
    fresh = "fresh"  # served from the freshness cache
    refreshed = "refreshed"  # retrieved now
    stale = "stale"  # retrieval failed; the last known context is served
    fallback = "fallback"  # the configured fallback context


@dataclass(frozen=True)
class ResolvedContext:
    """The context an answer is grounded in, and how it was obtained (the `meta` event's body)."""

    context_id: str
    state: ContextState
    passages: tuple[Passage, ...]
    age_s: float
    catalog_version: int
    fallback_text: str | None = None  # set when state is `fallback`
    # The cached context did not cover the question: passages retrieved for it were merged in.
    extended: bool = False


@dataclass(frozen=True)
class SharedContext:
    """One conversation's retrieved context as the replicas share it."""

    passages: tuple[Passage, ...]  # with their vectors: what judging coverage compares
    retrieved_at: float  # wall-clock seconds (time.time())
    catalog_version: int | None
    top_k: int
    filters: tuple[tuple[str, MetadataValue], ...]
    query: str  # the question it was last retrieved or extended for
