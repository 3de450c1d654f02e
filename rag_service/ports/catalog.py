"""The ports of the catalog: the vector store and its reading and writing sides, the embedding
model, the lexical index, the one-ingest-at-a-time lock, and the channel that announces a new
live catalog version to every process (``InProcessCatalogChannel`` in
``rag_service.retrieval``, ``RedisCatalogChannel`` in ``rag_service.adapters``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from rag_service.domain import (
    CatalogChanges,
    CatalogInfo,
    CatalogRecord,
    CatalogRef,
    Filters,
    IndexedText,
    LiveRecord,
    LiveState,
    MetadataValue,
    NewRecord,
    Passage,
    Vector,
)


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


VersionListener = Callable[[int], None]
# Called after the channel was down and listens again: announcements may have been missed.
ResyncListener = Callable[[], None]


class CatalogVersionChannel(Protocol):
    """Announcements of new live catalog versions, across the processes that share a catalog."""

    @property
    def degraded(self) -> bool:
        """True while announcements can be neither sent nor received (processes rely on their
        background checks alone)."""
        ...

    async def start(self, on_version: VersionListener, on_resync: ResyncListener) -> None:
        """Listen until ``aclose``: ``on_version`` gets every version announced (this
        process's own too), from the event loop. Returns once listening (or degraded)."""
        ...

    async def announce(self, version: int) -> None:
        """Tell every listening process that ``version`` is live now. Raises
        ``StateStoreUnavailable`` when the channel is down."""
        ...

    async def aclose(self) -> None: ...
