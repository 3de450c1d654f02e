"""The metrics port of the upstream client (``UpstreamMetrics``) and its default, a no-op.

The client reports through this Protocol only; the Prometheus implementation is an adapter and
lives with the service's other metrics (``rag_service.observability.PrometheusUpstreamMetrics``),
chosen in the composition root."""

from __future__ import annotations

from typing import Protocol


class UpstreamMetrics(Protocol):
    def on_attempt(self) -> None:
        """A request was sent upstream (first attempt, retry or probe)."""
        ...

    def on_retry(self, reason: str) -> None:
        """A retry was scheduled (or a stream parked) because of ``reason``."""
        ...

    def on_breaker_state(self, state: str) -> None: ...

    def on_budget(self, tokens_left: float) -> None: ...

    def on_ttft(self, seconds: float) -> None:
        """Time from the start of an answer to its first delivered text."""
        ...

    def on_outcome(self, outcome: str) -> None:
        """``"ok"`` or the error code an answer ended with."""
        ...


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
