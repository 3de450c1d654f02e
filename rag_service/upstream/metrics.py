"""The default of the upstream client's metrics port (``rag_service.ports.UpstreamMetrics``): a
no-op.

The client reports through the port only; the Prometheus implementation is an adapter and
lives with the service's other metrics (``rag_service.observability.PrometheusUpstreamMetrics``),
chosen in the composition root."""

from __future__ import annotations


class NoopUpstreamMetrics:
    def on_attempt(self) -> None:
        pass

    def on_retry(self, reason: str) -> None:
        pass

    def on_breaker_state(self, state: str) -> None:
        pass

    def on_budget(self, tokens_left: float) -> None:
        pass

    def on_ttft(self, seconds: float) -> None:
        pass

    def on_outcome(self, outcome: str) -> None:
        pass
