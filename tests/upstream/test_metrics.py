"""Metrics hooks: the Prometheus implementation fed by a real client run."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry

from rag_service.observability import PrometheusUpstreamMetrics
from rag_service.upstream import CircuitBreaker, OpenAICompatibleUpstream, RetryBudget
from tests.fixture_servers.fault_upstream import FaultUpstream, Status
from tests.upstream.conftest import QUESTION, FakeTime, collect, settings_for


async def test_prometheus_metrics_count_attempts_retries_outcomes(fake_time: FakeTime) -> None:
    registry = CollectorRegistry()
    async with FaultUpstream([Status(503), Status(401, "bad key")]) as upstream:
        settings = settings_for(upstream.base_url, breaker={"failure_threshold": 1})
        client = OpenAICompatibleUpstream(
            settings,
            rng=random.Random(1),
            clock=fake_time.clock,
            sleep=fake_time.sleep,
            budget=RetryBudget(settings.budget, clock=fake_time.clock),
            breaker=CircuitBreaker(settings.breaker, clock=fake_time.clock),
            metrics=PrometheusUpstreamMetrics(registry),
        )
        await collect(client.stream(QUESTION))  # 503 opens the circuit, the probe gets the 401
        await collect(client.stream(QUESTION))  # completes
        await client.aclose()

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("rag_upstream_attempts_total") == 3
    assert sample("rag_upstream_retries_total", reason="circuit_open") == 1
    assert sample("rag_upstream_outcomes_total", outcome="upstream_rejected") == 1
    assert sample("rag_upstream_outcomes_total", outcome="ok") == 1
    assert sample("rag_upstream_breaker_state", state="closed") == 1
    assert sample("rag_upstream_breaker_state", state="open") == 0
    assert sample("rag_upstream_ttft_seconds_count") == 1
    assert sample("rag_upstream_retry_budget_tokens") == 10


def test_two_registries_do_not_collide() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    PrometheusUpstreamMetrics(first).on_attempt()
    PrometheusUpstreamMetrics(second)
    assert first.get_sample_value("rag_upstream_attempts_total") == 1
    assert second.get_sample_value("rag_upstream_attempts_total") == 0
