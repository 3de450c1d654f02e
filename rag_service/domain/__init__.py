"""Domain types: the values that services, ports and adapters exchange.

They depend on nothing else in the project, so a port (``rag_service.ports``) is typed with
them and an adapter implements the port without the port knowing it. Import them from here.
"""

from rag_service.domain.catalog import (
    CatalogChanges,
    CatalogInfo,
    CatalogRecord,
    CatalogRef,
    Filters,
    IndexedText,
    MetadataValue,
    Passage,
    Vector,
)
from rag_service.domain.catalog_writes import LiveRecord, LiveState, NewRecord
from rag_service.domain.contexts import ContextState, ResolvedContext
from rag_service.domain.upstream_health import BreakerStateName, UpstreamHealth, UpstreamProbe

__all__ = [
    "BreakerStateName",
    "CatalogChanges",
    "CatalogInfo",
    "CatalogRecord",
    "CatalogRef",
    "ContextState",
    "Filters",
    "IndexedText",
    "LiveRecord",
    "LiveState",
    "MetadataValue",
    "NewRecord",
    "Passage",
    "ResolvedContext",
    "UpstreamHealth",
    "UpstreamProbe",
    "Vector",
]
