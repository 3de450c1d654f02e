"""Service metrics gathered at scrape time from the components' own counters (streams,
contexts, catalog, key limits, shared state, take-overs), and the event loop's lag histogram."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from rag_service.domain import KeyLimitStats
from rag_service.health import SharedStateComponent
from rag_service.ports import SharedStreams
from rag_service.retrieval import ContextStats, SnapshotStats
from rag_service.streaming import StreamStats

LOOP_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def counts_by(
    name: str, documentation: str, label: str, counts: Mapping[str, float]
) -> CounterMetricFamily:
    """A counter family with one label: a sample per ``counts`` entry (label value: count)."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in counts.items():
        family.add_metric([value], count)
    return family


def loop_lag_histogram(registry: CollectorRegistry) -> Histogram:
    """How late the event loop ran its lag timer (``LoopLagMonitor``), one sample per firing."""
    return Histogram(
        "rag_event_loop_lag_seconds",
        "Lateness of the event loop's lag timer (fired every 50 ms).",
        buckets=LOOP_LAG_BUCKETS,
        registry=registry,
    )


class ServiceCollector(Collector):
    """Streams, freshness cache and catalog figures; read from the live objects on each scrape."""

    def __init__(
        self,
        streams: Callable[[], StreamStats],
        contexts: Callable[[], ContextStats],
        catalog_version: Callable[[], int | None],
    ) -> None:
        self._streams = streams
        self._contexts = contexts
        self._catalog_version = catalog_version

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        streams = self._streams()
        yield GaugeMetricFamily("rag_streams_sessions", "Held stream sessions", streams.sessions)
        yield GaugeMetricFamily(
            "rag_streams_generating", "Sessions still generating", streams.generating
        )
        yield GaugeMetricFamily("rag_streams_readers", "Attached SSE readers", streams.readers)
        yield counts_by(
            "rag_streams_refused",
            "New streams refused with 503, by reason",
            "reason",
            {"too_many_streams": streams.refused_full, "overloaded": streams.refused_overloaded},
        )
        yield GaugeMetricFamily(
            "rag_streams_retained", "Ended streams held for resumes, no reader", streams.retained
        )
        yield GaugeMetricFamily(
            "rag_streams_retained_bytes",
            "Replay-buffer bytes of the retained streams",
            streams.retained_bytes,
        )
        yield counts_by(
            "rag_streams_evicted",
            "Retained streams forgotten before their retention ended, by bound",
            "reason",
            {"too_many_streams": streams.evicted_full, "bytes": streams.evicted_bytes},
        )
        yield CounterMetricFamily(
            "rag_streams_cancelled",
            "Generations cancelled by their client (DELETE /rag/stream/{stream_id})",
            streams.cancelled,
        )
        contexts = self._contexts()
        yield counts_by(
            "rag_context_resolutions",
            "Contexts served, by state",
            "state",
            {
                "fresh": contexts.hits,
                "refreshed": contexts.refreshes,
                "stale": contexts.stale_served,
                "fallback": contexts.fallback_served,
            },
        )
        yield CounterMetricFamily(
            "rag_context_retrievals", "Retrievals run (embed + search)", contexts.retrievals
        )
        yield CounterMetricFamily(
            "rag_context_cover_checks",
            "Fresh contexts judged against a new question (one embedding each)",
            contexts.cover_checks,
        )
        yield CounterMetricFamily(
            "rag_context_extended",
            "Fresh contexts that did not cover a new question and were extended for it",
            contexts.extended,
        )
        yield GaugeMetricFamily(
            "rag_context_cache_entries", "Contexts in the freshness cache", contexts.entries
        )
        version = self._catalog_version()
        if version is not None:
            yield GaugeMetricFamily("rag_catalog_version", "Live catalog version", version)


class CatalogSnapshotCollector(Collector):
    """Hybrid retrieval's in-memory catalog: how it was loaded (whole, or by a version's
    changes), the last load's time and size, and questions answered dense-only meanwhile."""

    def __init__(self, stats: Callable[[], SnapshotStats | None]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        stats = self._stats()
        if stats is None:  # RAG_RETRIEVAL__MODE=dense keeps no snapshot
            return
        yield counts_by(
            "rag_catalog_snapshot_loads",
            "Catalog snapshot loads, by kind",
            "kind",
            {"whole": stats.full_loads, "changes": stats.incremental_loads},
        )
        yield GaugeMetricFamily(
            "rag_catalog_snapshot_load_seconds", "Time of the last load", stats.last_load_ms / 1000
        )
        yield GaugeMetricFamily(
            "rag_catalog_snapshot_passages", "Passages of the loaded version", stats.records
        )
        yield CounterMetricFamily(
            "rag_retrieval_dense_only",
            "Questions answered dense-only while the first catalog version loaded",
            stats.dense_only_answers,
        )


class KeyLimitCollector(Collector):
    """Per-key limit refusals by reason (``streams`` / ``rate``) and the keys held in memory.

    No key id is a label: one series per key would grow with the keys, and the ids are the
    operators' business, not the scrapers'. Which key was refused is in the 429's log line.
    """

    def __init__(self, stats: Callable[[], KeyLimitStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        stats = self._stats()
        yield counts_by(
            "rag_key_limit_rejections",
            "New answers refused with 429 because their client key was past a limit, by limit",
            "reason",
            {"streams": stats.refused_streams, "rate": stats.refused_rate},
        )
        if stats.keys_tracked is not None:
            yield GaugeMetricFamily(
                "rag_key_limit_keys", "Client keys whose limit state is held", stats.keys_tracked
            )


class SharedStateCollector(Collector):
    """Fleet mode (issue #14): per shared-state component, whether it runs on this process's
    own state now (Redis failed it) and how many operations it served that way."""

    def __init__(self, components: Sequence[SharedStateComponent]) -> None:
        self._components = components

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        if not self._components:
            return
        fallbacks = CounterMetricFamily(
            "rag_shared_state_fallbacks",
            "Operations served on this process's own state because Redis failed, by component",
            labels=["component"],
        )
        degraded = GaugeMetricFamily(
            "rag_shared_state_degraded",
            "1 while the component runs on this process's own state (Redis failed it)",
            labels=["component"],
        )
        for part in self._components:
            fallbacks.add_metric([part.name], part.fallbacks())
            degraded.add_metric([part.name], 1 if part.degraded() else 0)
        yield fallbacks
        yield degraded


class StreamTakeoverCollector(Collector):
    """Fleet mode: streams this replica took over from a dead one, and streams of its own that
    another replica took over (it was thought dead: its heartbeat lapsed)."""

    def __init__(self, shared: SharedStreams) -> None:
        self._shared = shared

    def collect(self) -> Iterator[CounterMetricFamily]:
        stats = self._shared.stats()
        yield counts_by(
            "rag_stream_takeovers",
            "Streams continued by another replica than the one that began them, by side",
            "side",
            {"taken_over": stats.taken_over, "moved": stats.moved},
        )


class ReplicaCollector(Collector):
    """``rag_replica_info{replica}``: which process answered a scrape (``create_app``'s
    replica id: host, pid, random part), so that per-worker scrapes can be told apart."""

    def __init__(self, replica_id: str) -> None:
        self._replica_id = replica_id

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            "rag_replica_info", "This process among the replicas and workers", labels=["replica"]
        )
        info.add_metric([self._replica_id], 1)
        yield info
