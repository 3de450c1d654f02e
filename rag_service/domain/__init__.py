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
from rag_service.domain.contexts import ContextState, ResolvedContext, SharedContext
from rag_service.domain.key_limits import KeyLimits, KeyLimitStats
from rag_service.domain.stream_events import (
    TERMINAL_EVENTS,
    DeltaEvent,
    NamedEvent,
    SessionEvent,
    SharedState,
    SharedStreamStats,
    StreamRecord,
)
from rag_service.domain.upstream_health import (
    BreakerNews,
    BreakerState,
    BreakerStateName,
    UpstreamHealth,
    UpstreamProbe,
)

__all__ = [
    "TERMINAL_EVENTS",
    "BreakerNews",
    "BreakerState",
    "BreakerStateName",
    "CatalogChanges",
    "CatalogInfo",
    "CatalogRecord",
    "CatalogRef",
    "ChatMessage",
    "ChatRequest",
    "Completed",
    "ContextState",
    "DeltaEvent",
    "Failed",
    "Filters",
    "IndexedText",
    "KeyLimitStats",
    "KeyLimits",
    "LiveRecord",
    "LiveState",
    "MetadataValue",
    "NamedEvent",
    "NewRecord",
    "Passage",
    "ResolvedContext",
    "Resumed",
    "RetryNotice",
    "Role",
    "SessionEvent",
    "SharedContext",
    "SharedState",
    "SharedStreamStats",
    "StreamRecord",
    "TextDelta",
    "Timings",
    "UpstreamHealth",
    "UpstreamProbe",
    "Vector",
]
