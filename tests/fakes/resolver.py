"""A ``ContextResolver`` fake: answers with a fixed context (or raises), records every call."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from rag_service.domain import ContextState, MetadataValue, Passage, ResolvedContext
from rag_service.errors import RagServiceError

SAMPLE_PASSAGES = (
    Passage(id="boots-1#0", doc_id="boots-1", title="Trail boots", text="Waterproof.", score=0.82),
    Passage(id="boots-1#1", doc_id="boots-1", title="Trail boots", text="Sizes 38-47.", score=0.61),
    Passage(id="returns#0", doc_id="returns", title="Returns", text="30 days.", score=0.74),
)


def sample_context(state: ContextState = ContextState.refreshed) -> ResolvedContext:
    return ResolvedContext(
        context_id="",
        state=state,
        passages=SAMPLE_PASSAGES,
        age_s=1.25,
        catalog_version=7,
    )


@dataclass(frozen=True)
class ResolveCall:
    context_id: str
    query: str
    filters: Mapping[str, MetadataValue] | None
    top_k: int | None
    refresh: bool


@dataclass
class FakeResolver:
    context: ResolvedContext = field(default_factory=sample_context)
    error: RagServiceError | None = None
    calls: list[ResolveCall] = field(default_factory=list)
    invalidated: list[str] = field(default_factory=list)

    async def resolve(
        self,
        context_id: str,
        query: str,
        *,
        filters: Mapping[str, MetadataValue] | None = None,
        top_k: int | None = None,
        refresh: bool = False,
    ) -> ResolvedContext:
        self.calls.append(ResolveCall(context_id, query, filters, top_k, refresh))
        if self.error is not None:
            raise self.error
        return replace(self.context, context_id=context_id)

    def invalidate(self, context_id: str) -> bool:
        self.invalidated.append(context_id)
        return False
