"""The upstream client's metrics in Prometheus: the ``UpstreamMetrics`` port
(``rag_service/upstream/metrics.py``) implemented with prometheus_client's counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BREAKER_STATES = ("closed", "half_open", "open")
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


class PrometheusUpstreamMetrics:
    """Registers its collectors in the given registry (never the global default one)."""

    def __init__(self, registry: CollectorRegistry, *, prefix: str = "rag_upstream") -> None:
        self._attempts = Counter(
            f"{prefix}_attempts", "Requests sent to the upstream LLM.", registry=registry
        )
        self._retries = Counter(
            f"{prefix}_retries", "Retries scheduled, by reason.", ["reason"], registry=registry
        )
        self._breaker = Gauge(
            f"{prefix}_breaker_state",
            "1 for the circuit breaker's current state, 0 for the others.",
            ["state"],
            registry=registry,
        )
        self._budget = Gauge(
            f"{prefix}_retry_budget_tokens", "Retries the budget allows now.", registry=registry
        )
        self._ttft = Histogram(
            f"{prefix}_ttft_seconds",
            "Time to the first delivered text of an answer.",
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self._outcomes = Counter(
            f"{prefix}_outcomes",
            "Answers by outcome (ok or error code).",
            ["outcome"],
            registry=registry,
        )
        self.on_breaker_state("closed")

    def on_attempt(self) -> None:
        self._attempts.inc()

    def on_retry(self, reason: str) -> None:
        self._retries.labels(reason=reason).inc()

    def on_breaker_state(self, state: str) -> None:
        for known in BREAKER_STATES:
            self._breaker.labels(state=known).set(1 if known == state else 0)

    def on_budget(self, tokens_left: float) -> None:
        self._budget.set(tokens_left)

    def on_ttft(self, seconds: float) -> None:
        self._ttft.observe(seconds)

    def on_outcome(self, outcome: str) -> None:
        self._outcomes.labels(outcome=outcome).inc()
