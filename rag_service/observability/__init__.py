"""The service's metrics, in one place: the collectors that read the components' own counters
at scrape time, the upstream client's metrics (the Prometheus side of the ``UpstreamMetrics``
port), the event loop's lag histogram, and the per-process metrics port of fleet mode. Every
collector registers in the registry it is given, never prometheus_client's global one, and the
health routes serve that registry on ``/metrics``."""

from rag_service.observability.collectors import (
    CatalogSnapshotCollector,
    KeyLimitCollector,
    ReplicaCollector,
    ServiceCollector,
    SharedStateCollector,
    StreamTakeoverCollector,
    loop_lag_histogram,
)
from rag_service.observability.metrics_port import metrics_port_server
from rag_service.observability.upstream_metrics import PrometheusUpstreamMetrics

__all__ = [
    "CatalogSnapshotCollector",
    "KeyLimitCollector",
    "PrometheusUpstreamMetrics",
    "ReplicaCollector",
    "ServiceCollector",
    "SharedStateCollector",
    "StreamTakeoverCollector",
    "loop_lag_histogram",
    "metrics_port_server",
]
