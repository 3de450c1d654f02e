"""Ports: the small protocols through which services reach the outside world.

Services depend only on these; adapters (``SentenceTransformerEmbedder``, ``ChromaStore``,
``OpenAICompatibleUpstream``) implement them, and tests substitute fakes. They are typed with
the domain types of ``rag_service.domain``, never with an adapter's own, so the dependency
points from the adapters to the ports. Besides the Protocols, it names the callback of
``ChatUpstream.answer`` (``EventSink``) and the items it takes (``UpstreamEvent``): their failure
carries a ``RagServiceError``, which the domain does not import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from rag_service.domain import (
    CatalogChanges,
    CatalogInfo,
    CatalogRecord,
    CatalogRef,
    ChatRequest,
    Completed,
    Failed,
    Filters,
    IndexedText,
    LiveRecord,
    LiveState,
    MetadataValue,
    NewRecord,
    Passage,
    ResolvedContext,
    Resumed,
    RetryNotice,
    TextDelta,
    UpstreamHealth,
    UpstreamProbe,
    Vector,
)
from rag_service.errors import RagServiceError

# The items of an answer (rag_service.domain.chat), its failure carrying the service's error.
UpstreamEvent = TextDelta | RetryNotice | Resumed | Completed | Failed[RagServiceError]

# Takes each item of an answer as it arrives. Called synchronously, possibly from inside a
# transport's data callback: it must neither block nor raise.
EventSink = Callable[[UpstreamEvent], None]


class Embedder(Protocol):
    """Turns texts into vectors; one model per process, loaded once."""

    @property
    def dimension(self) -> int: ...

    @property
    def model_name(self) -> str: ...

    def load(self) -> None:
        """Get ready to embed now (load the model), so the first request does not wait for it;
        one with nothing to load returns at once. Raises ``EmbedderUnavailable``."""
        ...

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        """Embed ``texts`` (batched internally); raises ``EmbedderUnavailable``."""
        ...


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


class RecordWriter(Protocol):
    """One record collection's write side (ChromaStore's RecordSet implements it). Records
    staged for a version stay invisible to readers until that version is published."""

    @property
    def name(self) -> str: ...
    def live_records(self, version: int) -> dict[str, LiveRecord]: ...
    def embeddings_of(self, record_ids: Sequence[str]) -> dict[str, Vector]: ...
    def recover(self, live_version: int) -> int: ...
    def stage(self, version: int, records: Sequence[NewRecord]) -> None: ...
    def retire(self, version: int, record_ids: Sequence[str]) -> None: ...
    def collect_garbage(self, live_version: int) -> int: ...


class CatalogWriter(Protocol):
    """The write side of the vector store that ingestion needs (ChromaStore implements it)."""

    def live_state(self) -> LiveState: ...
    def records(self, name: str) -> RecordWriter: ...
    def new_collection_name(self, version: int) -> str: ...
    def publish(self, state: LiveState) -> None: ...
    def drop_unused_collections(self, keep: set[str]) -> list[str]: ...


class ReadWriteCatalogStore(CatalogStore, CatalogWriter, Protocol):
    """The store the service runs on: read by retrieval, written by admin ingests
    (ChromaStore and LazyChromaStore implement it)."""


class LexicalSearcher(Protocol):
    """A read-only view of a lexical index at one catalog version."""

    def search(self, query: str, *, n: int) -> list[str]:
        """Ids of the best ``n`` records for ``query`` (BM25), best first."""
        ...


class LexicalIndex(Protocol):
    """A full-text index that follows catalog versions record by record."""

    def apply(self, added: Sequence[IndexedText], removed: Sequence[str]) -> LexicalSearcher:
        """Add and remove records; the searcher sees the result, earlier searchers do not."""
        ...


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


class IngestLease(Protocol):
    async def release(self) -> None:
        """Give the lock back (only if still this holder's)."""
        ...


class ClusterIngestLock(Protocol):
    """One ingest at a time across hosts, held with a lease its holder keeps renewing."""

    async def acquire(self) -> IngestLease:
        """``IngestInProgress`` naming the holder while another process holds it;
        ``StateStoreUnavailable`` when the lock's store does not answer."""
        ...


class Clock(Protocol):
    """Monotonic seconds; tests pass a controllable one."""

    def __call__(self) -> float: ...


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
