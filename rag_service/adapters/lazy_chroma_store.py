"""LazyChromaStore: a ChromaStore that connects on first use and reconnects after failures.

A Chroma server that is down when the service starts must not stop the service: answers fall
back to stale or fallback context, readiness reports the store, and the first call after the
server is back connects.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from rag_service.adapters.chroma_store import ChromaStore, RecordSet
from rag_service.domain import (
    CatalogChanges,
    CatalogInfo,
    CatalogRecord,
    CatalogRef,
    Filters,
    LiveState,
    MetadataValue,
    Passage,
    Vector,
)


class LazyChromaStore:
    def __init__(self, connect: Callable[[], ChromaStore]) -> None:
        self._connect = connect
        self._store: ChromaStore | None = None
        self._lock = threading.Lock()

    def _get(self) -> ChromaStore:
        store = self._store
        if store is None:
            with self._lock:
                if self._store is None:
                    self._store = self._connect()  # raises VectorStoreUnavailable while down
                store = self._store
        return store

    def live_state(self) -> LiveState:
        return self._get().live_state()

    def live_version(self) -> int:
        return self._get().live_version()

    def catalog_info(self) -> CatalogInfo:
        return self._get().catalog_info()

    def search(
        self,
        vector: Vector,
        *,
        top_k: int,
        filters: Mapping[str, MetadataValue] | None = None,
    ) -> list[Passage]:
        return self._get().search(vector, top_k=top_k, filters=filters)

    def live_catalog(self) -> CatalogRef:
        return self._get().live_catalog()

    def records_at(self, catalog: CatalogRef) -> list[CatalogRecord]:
        return self._get().records_at(catalog)

    def changes_to(self, catalog: CatalogRef) -> CatalogChanges | None:
        return self._get().changes_to(catalog)

    def nearest(
        self, catalog: CatalogRef, vector: Vector, n: int, filters: Filters = None
    ) -> list[str]:
        return self._get().nearest(catalog, vector, n, filters)

    def nearest_any_version(self, catalog: CatalogRef, vector: Vector, n: int) -> list[str]:
        return self._get().nearest_any_version(catalog, vector, n)

    def vectors(self, catalog: CatalogRef, record_ids: Sequence[str]) -> dict[str, Vector]:
        return self._get().vectors(catalog, record_ids)

    def records(self, name: str) -> RecordSet:
        return self._get().records(name)

    def new_collection_name(self, version: int) -> str:
        return self._get().new_collection_name(version)

    def publish(self, state: LiveState) -> None:
        self._get().publish(state)

    def drop_unused_collections(self, keep: set[str]) -> list[str]:
        return self._get().drop_unused_collections(keep)
