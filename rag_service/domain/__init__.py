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
from rag_service.domain.chat import (
    ChatMessage,
    ChatRequest,
    Completed,
    Failed,
    Resumed,
    RetryNotice,
    Role,
    TextDelta,
    Timings,
)
from rag_service.domain.contexts import ContextState, ResolvedContext
from rag_service.domain.upstream_health import BreakerStateName, UpstreamHealth, UpstreamProbe

__all__ = [
    "BreakerStateName",
    "CatalogChanges",
    "CatalogInfo",
    "CatalogRecord",
    "CatalogRef",
    "ChatMessage",
    "ChatRequest",
    "Completed",
    "ContextState",
    "Failed",
    "Filters",
    "IndexedText",
    "LiveRecord",
    "LiveState",
    "MetadataValue",
    "NewRecord",
    "Passage",
    "ResolvedContext",
    "Resumed",
    "RetryNotice",
    "Role",
    "TextDelta",
    "Timings",
    "UpstreamHealth",
    "UpstreamProbe",
    "Vector",
]
