"""Ports: the small protocols through which services reach the outside world.

Services depend only on these; adapters (``SentenceTransformerEmbedder``, ``ChromaStore``,
``OpenAICompatibleUpstream``, ``RedisStreamStore``, ...) implement them, and tests substitute
fakes. They are typed with the domain types of ``rag_service.domain``, never with an adapter's
or a service's own, so the dependency points from the adapters to the ports. Import them from
here; the modules group them by concern:

- ``catalog``: the vector store, the embedding model, the lexical index, the ingest lock and
  the channel announcing catalog versions;
- ``contexts``: the freshness cache's resolver and shared store, the clocks;
- ``upstream``: the chat model, its metrics, the board of shared breaker states;
- ``streams``: the store through which replicas share their streams;
- ``key_limits``: per-key admission, with the refusals every implementation gives.
"""

from rag_service.ports.catalog import (
    CatalogRecords,
    CatalogStore,
    CatalogVersionChannel,
    CatalogWriter,
    ClusterIngestLock,
    Embedder,
    IngestLease,
    LexicalIndex,
    LexicalSearcher,
    PassageSearch,
    ReadWriteCatalogStore,
    RecordWriter,
    ResyncListener,
    VersionListener,
)
from rag_service.ports.contexts import Clock, ContextResolver, ContextStore, WallClock
from rag_service.ports.key_limits import (
    KeyLimiter,
    Refusals,
    StreamSlot,
    limits_by_key,
)
from rag_service.ports.streams import (
    HEARTBEAT_EVERY_S,
    HEARTBEAT_TTL_S,
    WATCH_EVERY_S,
    WATCHED_FOR_S,
    SharedSession,
    SharedStreams,
    StreamOwner,
)
from rag_service.ports.upstream import (
    BreakerBoard,
    ChatUpstream,
    EventSink,
    NewsListener,
    UpstreamEvent,
    UpstreamMetrics,
)

__all__ = [
    "HEARTBEAT_EVERY_S",
    "HEARTBEAT_TTL_S",
    "WATCHED_FOR_S",
    "WATCH_EVERY_S",
    "BreakerBoard",
    "CatalogRecords",
    "CatalogStore",
    "CatalogVersionChannel",
    "CatalogWriter",
    "ChatUpstream",
    "Clock",
    "ClusterIngestLock",
    "ContextResolver",
    "ContextStore",
    "Embedder",
    "EventSink",
    "IngestLease",
    "KeyLimiter",
    "LexicalIndex",
    "LexicalSearcher",
    "NewsListener",
    "PassageSearch",
    "ReadWriteCatalogStore",
    "RecordWriter",
    "Refusals",
    "ResyncListener",
    "SharedSession",
    "SharedStreams",
    "StreamOwner",
    "StreamSlot",
    "UpstreamEvent",
    "UpstreamMetrics",
    "VersionListener",
    "WallClock",
    "limits_by_key",
]
