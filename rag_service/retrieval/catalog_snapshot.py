"""The live catalog version held in memory: its passages, identifiers and lexical index.

Hybrid retrieval needs the lexical index and the vector index to answer for the same catalog
version. Both come from one source, the vector store's versioned records: a snapshot is built
from the records of one version (``CatalogRecords.records_at``) and moved to the next version by
that version's changes alone (``changes_to``: records added, records retired), so a re-ingest of
ten products costs ten documents. Nothing here is persisted: a killed ingest never published, so
no reader (and no snapshot) ever sees its records, and every process or replica derives the same
snapshot from the same store.

Completeness: the store keeps the records of the previous version until the version after the
live one is published (ingest's garbage collection). A load of version V is therefore complete
if the live version is at most V + 1 once it has been read; otherwise it is read again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from rag_service.domain import CatalogRecord, CatalogRef, IndexedText
from rag_service.errors import VectorStoreUnavailable
from rag_service.ports import CatalogRecords, LexicalIndex, LexicalSearcher
from rag_service.retrieval.identifiers import IdentifierTable, record_identifiers

logger = logging.getLogger(__name__)

MAX_LOAD_ATTEMPTS = 3  # a catalog published again during each load is not worth chasing further


@dataclass(frozen=True)
class CatalogSnapshot:
    """One catalog version in memory (immutable; the next version is a new snapshot)."""

    catalog: CatalogRef
    records: Mapping[str, CatalogRecord]  # record id -> record
    identifiers_of: Mapping[str, frozenset[str]]  # record id -> normalised identifiers
    identifiers: IdentifierTable
    document_records: Mapping[str, tuple[str, ...]]  # doc id -> its record ids, in chunk order
    lexical: LexicalSearcher
    index: LexicalIndex  # the index the next version's changes are applied to


@dataclass
class SnapshotStats:
    full_loads: int = 0
    incremental_loads: int = 0
    dense_only_answers: int = 0  # questions answered dense-only while a load ran
    last_load_ms: float = 0.0
    records: int = 0
    version: int = 0


class CatalogSnapshots:
    """Hands out the snapshot of a catalog version, loading it on first need (thread-safe).

    Callers run in worker threads (retrieval is blocking); one load runs at a time and the
    others wait for it, so a new version is read once per process.
    """

    def __init__(self, store: CatalogRecords, new_index: Callable[[], LexicalIndex]) -> None:
        self._store = store
        self._new_index = new_index
        self._current: CatalogSnapshot | None = None
        self._lock = threading.Lock()
        self.stats = SnapshotStats()

    @property
    def latest(self) -> CatalogSnapshot | None:
        """The newest snapshot loaded (no store call; None before the first load)."""
        return self._current

    def current(self, catalog: CatalogRef) -> CatalogSnapshot:
        """The snapshot of ``catalog`` (the live catalog as the caller just read it), loading
        it if needed, and waiting while another thread loads."""
        snapshot = self._snapshot(catalog, wait=True)
        assert snapshot is not None, "a waiting call always gets its snapshot"
        return snapshot

    def unless_loading(self, catalog: CatalogRef) -> CatalogSnapshot | None:
        """As ``current``, but None at once while another thread is loading."""
        return self._snapshot(catalog, wait=False)

    def _snapshot(self, catalog: CatalogRef, *, wait: bool) -> CatalogSnapshot | None:
        snapshot = self._current
        if snapshot is not None and snapshot.catalog == catalog:
            return snapshot
        if not self._lock.acquire(blocking=wait):
            return None
        try:
            snapshot = self._current
            if snapshot is not None and snapshot.catalog == catalog:
                return snapshot
            try:
                loaded = self._load(catalog, snapshot)
            except BaseException:
                # A failed incremental load may have changed the index the current snapshot
                # shares; the next call loads the whole catalog into a new one.
                self._current = None
                raise
            if snapshot is None or _newer(loaded.catalog, snapshot.catalog):
                self._current = loaded
            return loaded
        finally:
            self._lock.release()

    def _load(self, catalog: CatalogRef, previous: CatalogSnapshot | None) -> CatalogSnapshot:
        for _ in range(MAX_LOAD_ATTEMPTS):
            started = time.perf_counter()
            follows = (
                previous is not None
                and previous.catalog.generation == catalog.generation
                and previous.catalog.version == catalog.version - 1
            )
            changes = self._store.changes_to(catalog) if follows else None
            if previous is not None and changes is not None:
                snapshot = _advanced(previous, catalog, changes.added, changes.removed)
                self.stats.incremental_loads += 1
            else:
                records = self._store.records_at(catalog)
                snapshot = _advanced(_empty(catalog, self._new_index()), catalog, records, ())
                self.stats.full_loads += 1
            live = self._store.live_catalog()
            if live.version <= catalog.version + 1:
                self._loaded(snapshot, started, incremental=changes is not None)
                return snapshot
            # Two publishes since `catalog`: records it needed may be collected already.
            catalog, previous = live, None
        # An outage-like failure: the question is answered from the stale or fallback context.
        raise VectorStoreUnavailable(
            "the catalog kept changing while it was being loaded",
            details={"version": catalog.version},
        )

    def _loaded(self, snapshot: CatalogSnapshot, started: float, *, incremental: bool) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.stats.last_load_ms = elapsed_ms
        self.stats.records = len(snapshot.records)
        self.stats.version = snapshot.catalog.version
        logger.info(
            "catalog version %s loaded for hybrid retrieval (%s): %d passages in %.0f ms",
            snapshot.catalog.version,
            "changes only" if incremental else "whole catalog",
            len(snapshot.records),
            elapsed_ms,
        )


def _empty(catalog: CatalogRef, index: LexicalIndex) -> CatalogSnapshot:
    return CatalogSnapshot(
        catalog=catalog,
        records={},
        identifiers_of={},
        identifiers=IdentifierTable({}),
        document_records={},
        lexical=index.apply((), ()),
        index=index,
    )


def _advanced(
    base: CatalogSnapshot,
    catalog: CatalogRef,
    added: Iterable[CatalogRecord],
    removed: Sequence[str],
) -> CatalogSnapshot:
    """``base`` with records removed and added: a new snapshot, ``base`` stays as it was."""
    added = list(added)
    records = dict(base.records)
    identifiers_of = dict(base.identifiers_of)
    gone = [record_id for record_id in removed if record_id in records]
    for record_id in gone:
        del records[record_id]
        identifiers_of.pop(record_id, None)
    texts = []
    for record in added:
        records[record.record_id] = record
        found = frozenset(record_identifiers(record.doc_id, record.title, record.text))
        identifiers_of[record.record_id] = found
        texts.append(IndexedText(record.record_id, _indexed_text(record, found)))
    lexical = base.index.apply(texts, gone)
    return CatalogSnapshot(
        catalog=catalog,
        records=records,
        identifiers_of=identifiers_of,
        identifiers=IdentifierTable.build(
            (records[rid].doc_id, found) for rid, found in identifiers_of.items()
        ),
        document_records=_by_document(records),
        lexical=lexical,
        index=base.index,
    )


def _indexed_text(record: CatalogRecord, identifiers: frozenset[str]) -> str:
    # The normalised identifiers too: "BOT00012" typed as one word then matches "BOT-00012",
    # which the tokenizer splits in two.
    return f"{record.title}\n{record.text}\n{' '.join(sorted(identifiers))}"


def _by_document(records: Mapping[str, CatalogRecord]) -> dict[str, tuple[str, ...]]:
    grouped: dict[str, list[CatalogRecord]] = {}
    for record in records.values():
        grouped.setdefault(record.doc_id, []).append(record)
    return {
        doc_id: tuple(r.record_id for r in sorted(chunks, key=_chunk_order))
        for doc_id, chunks in grouped.items()
    }


def _chunk_order(record: CatalogRecord) -> tuple[int, str]:
    index = record.metadata.get("chunk_index", 0)
    return (int(index) if isinstance(index, int | float) else 0, record.chunk_id)


def _newer(candidate: CatalogRef, current: CatalogRef) -> bool:
    return candidate.version > current.version or candidate.generation != current.generation
