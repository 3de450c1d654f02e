"""Ports: the small protocols through which services reach the outside world.

Services depend only on these; adapters (``SentenceTransformerEmbedder``, ``ChromaStore``,
``OpenAICompatibleUpstream``) implement them, and tests substitute fakes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

from rag_service.upstream_events import ChatRequest, EventSink

MetadataValue = str | int | float | bool
Vector = list[float]
Filters = Mapping[str, MetadataValue] | None  # metadata equality filters; None: no filter


class Embedder(Protocol):
    """Turns texts into vectors; one model per process, loaded once."""

    @property
    def dimension(self) -> int: ...

    @property
    def model_name(self) -> str: ...

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        """Embed ``texts`` (batched internally); raises ``EmbedderUnavailable``."""
        ...


@dataclass(frozen=True)
class Passage:
    """One retrieved piece of catalog text."""

    id: str
    doc_id: str
    title: str
    text: str
    score: float
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)
    # The passage's embedding, when the store gave it: what judging whether a cached context
    # covers a new question compares against. Never sent to clients.
    vector: tuple[float, ...] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class CatalogInfo:
    """The live catalog as readers see it."""

    version: int
    document_count: int
    chunk_count: int
    sources: Mapping[str, int]
    updated_at: str | None
    embedding_model: str | None


class PassageSearch(Protocol):
    """The read side of the vector store that retrieval needs."""

    def live_version(self) -> int:
        """The live catalog version (0: nothing ingested yet); raises VectorStoreUnavailable."""
        ...

    def search(
        self,
        vector: Vector,
        *,
        top_k: int,
        filters: Mapping[str, MetadataValue] | None = None,
    ) -> list[Passage]:
        """Nearest passages of the live catalog, best first; raises VectorStoreUnavailable."""
        ...

    def catalog_info(self) -> CatalogInfo: ...


@dataclass(frozen=True)
class CatalogRef:
    """Which catalog readers see: its version, and the generation of records that holds it (a
    new one when the embedding model changes; a fake store bumps it on every change)."""

    version: int
    generation: str | None


@dataclass(frozen=True)
class CatalogRecord:
    """One passage of a catalog version, as hybrid retrieval holds it in memory."""

    record_id: str  # unique across versions: a changed passage is a new record
    chunk_id: str
    doc_id: str
    title: str
    text: str
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)

    def passage(self, score: float, vector: Sequence[float] | None) -> Passage:
        return Passage(
            id=self.chunk_id,
            doc_id=self.doc_id,
            title=self.title,
            text=self.text,
            score=score,
            metadata=self.metadata,
            vector=tuple(vector) if vector is not None else None,
        )


@dataclass(frozen=True)
class CatalogChanges:
    """What one published version changed: records added, and ids of records retired."""

    added: tuple[CatalogRecord, ...]
    removed: tuple[str, ...]


class CatalogRecords(Protocol):
    """The read side hybrid retrieval needs: whole catalog versions and their changes (to keep
    a lexical index of exactly the version the vector search reads), and the vector search by
    record id, whose texts the caller already holds."""

    def live_catalog(self) -> CatalogRef:
        """The live catalog; raises VectorStoreUnavailable."""
        ...

    def records_at(self, catalog: CatalogRef) -> list[CatalogRecord]:
        """Every record visible in ``catalog``."""
        ...

    def changes_to(self, catalog: CatalogRef) -> CatalogChanges | None:
        """What ``catalog`` changed over the version before it, in the same generation; None
        when the store cannot tell (the reader then loads the whole version)."""
        ...

    def nearest(
        self, catalog: CatalogRef, vector: Vector, n: int, filters: Filters = None
    ) -> list[str]:
        """Ids of the ``n`` records of ``catalog``'s version nearest to ``vector``, nearest
        first."""
        ...

    def nearest_any_version(self, catalog: CatalogRef, vector: Vector, n: int) -> list[str]:
        """As ``nearest`` over every version ``catalog``'s generation still holds (cheaper): for
        a caller that knows which ids are visible."""
        ...

    def vectors(self, catalog: CatalogRef, record_ids: Sequence[str]) -> dict[str, Vector]:
        """The stored embeddings of ``record_ids`` (missing ids are left out)."""
        ...


class CatalogStore(PassageSearch, CatalogRecords, Protocol):
    """A vector store both retrieval modes can read (ChromaStore implements it)."""


class LexicalSearcher(Protocol):
    """A read-only view of a lexical index at one catalog version."""

    def search(self, query: str, *, n: int) -> list[str]:
        """Ids of the best ``n`` records for ``query`` (BM25), best first."""
        ...


@dataclass(frozen=True)
class IndexedText:
    """What the lexical index holds of one record: its id and the words to find it by."""

    record_id: str
    text: str


class LexicalIndex(Protocol):
    """A full-text index that follows catalog versions record by record."""

    def apply(self, added: Sequence[IndexedText], removed: Sequence[str]) -> LexicalSearcher:
        """Add and remove records; the searcher sees the result, earlier searchers do not."""
        ...


BreakerStateName = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class UpstreamHealth:
    """What the upstream client knows of its upstream right now, for ``/readyz``."""

    breaker: BreakerStateName
    # In words, the configuration problem (untrusted certificate, proxy refusal) that made the
    # last attempt fail; cleared once the upstream streams an answer again.
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.breaker != "open" and self.problem is None


@dataclass(frozen=True)
class UpstreamProbe:
    """The outcome of one real request to the upstream, for ``/readyz``."""

    ok: bool  # the server answered and takes our key
    detail: str  # in words: how it answered, or why not (never a stack trace)
    model_listed: bool | None = None  # None: the server lists no models


class ChatUpstream(Protocol):
    """An OpenAI-compatible chat model that streams its answer."""

    def ensure_available(self) -> None:
        """Raise ``CircuitOpen`` (with a jittered retry_after_s) when requests would fail fast."""
        ...

    def health(self) -> UpstreamHealth:
        """The breaker's state and the last configuration problem; cheap, never raises."""
        ...

    async def probe(self) -> UpstreamProbe:
        """One cheap real request to the upstream (``GET /models``); never raises."""
        ...

    async def answer(self, request: ChatRequest, sink: EventSink, delivered: str = "") -> None:
        """Pass each item of the answer to ``sink`` as it arrives, the last one being exactly one
        terminal item (``Completed`` or ``Failed``); return after it. ``delivered``: text of the
        answer its consumer has already (from a replica that died): continue after it.

        Pushing rather than yielding lets an implementation deliver a token straight from its
        transport's data callback, with no task wake-up per token. Cancelling the call cancels
        the answer and releases its upstream request.
        """
        ...

    async def aclose(self) -> None: ...


class Clock(Protocol):
    """Monotonic seconds; tests pass a controllable one."""

    def __call__(self) -> float: ...


JSON = dict[str, Any]


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
