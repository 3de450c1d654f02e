"""Attempts, deadline, retry budget and circuit breaker as one answer's limits."""

from __future__ import annotations

import asyncio
import random

import pytest

from rag_service.domain import BreakerState, Completed, Failed, RetryNotice
from rag_service.errors import CircuitOpen, RetriesExhausted
from rag_service.ports import UpstreamEvent
from rag_service.settings import UpstreamSettings
from rag_service.upstream import OpenAICompatibleUpstream, RetryBudget
from tests.fixture_servers.fault_upstream import Complete, FaultUpstream, Status
from tests.upstream.conftest import (
    QUESTION,
    QUESTION_ANSWER,
    ClientFactory,
    FakeTime,
    collect,
    settings_for,
)

ALWAYS_503 = Status(503, "overloaded")


def notices(items: list[UpstreamEvent]) -> list[RetryNotice]:
    return [item for item in items if isinstance(item, RetryNotice)]


async def test_max_attempts_exhausted(make_client: ClientFactory, fake_time: FakeTime) -> None:
    async with FaultUpstream(default=ALWAYS_503) as upstream:
        client = make_client(upstream.base_url, retry={"max_attempts": 3})
        items = await collect(client.stream(QUESTION))
    rng = random.Random(7)
    expected = [rng.uniform(0, 0.5), rng.uniform(0, 1.0)]
    assert notices(items) == [
        RetryNotice(2, 3, expected[0], "status_503"),
        RetryNotice(3, 3, expected[1], "status_503"),
    ]
    assert fake_time.sleeps == expected
    failed = items.terminal
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, RetriesExhausted)
    assert failed.error.message == "gave up after 3 attempts: upstream answered 503: overloaded"
    assert failed.error.details == {"reason": "max_attempts", "last_reason": "status_503"}
    assert (failed.attempts, upstream.request_count) == (3, 3)


async def test_deadline_exhausted_before_a_wait_that_would_pass_it(
    make_client: ClientFactory, fake_time: FakeTime
) -> None:
    async with FaultUpstream(default=ALWAYS_503) as upstream:
        client = make_client(
            upstream.base_url,
            retry={"max_attempts": 50, "deadline_s": 10.0, "base_delay_s": 1.0, "jitter": "equal"},
            breaker={"failure_threshold": 50},
        )
        items = await collect(client.stream(QUESTION))
    # equal jitter: waits of 0.5-1, 1-2, 2-4, 4-8 s...; the first that would end past 10 s is
    # refused before it is slept
    rng = random.Random(7)
    planned = [step / 2 + rng.uniform(0, step / 2) for step in (1.0, 2.0, 4.0, 8.0, 16.0)]
    cutoff = next(i for i in range(5) if sum(planned[: i + 1]) > 10.0)
    assert cutoff >= 3
    assert fake_time.sleeps == planned[:cutoff]
    failed = items.terminal
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, RetriesExhausted)
    assert failed.error.details == {"reason": "deadline", "last_reason": "status_503"}
    assert upstream.request_count == cutoff + 1 == failed.attempts


async def test_retry_budget_exhausted(make_client: ClientFactory) -> None:
    async with FaultUpstream(default=ALWAYS_503) as upstream:
        client = make_client(
            upstream.base_url, budget={"burst": 1.0, "ratio": 0.0, "min_per_s": 0.0}
        )
        items = await collect(client.stream(QUESTION))
    assert len(notices(items)) == 1
    error = items.error
    assert isinstance(error, RetriesExhausted)
    assert error.details == {"reason": "retry_budget_exhausted", "last_reason": "status_503"}
    assert upstream.request_count == 2


async def test_shared_budget_limits_retries_across_streams(fake_time: FakeTime) -> None:
    """20 failing answers share one bucket of 3: only 3 retries are sent in total."""
    async with FaultUpstream(default=ALWAYS_503) as upstream:
        settings = settings_for(
            upstream.base_url,
            budget={"burst": 3.0, "ratio": 0.0, "min_per_s": 0.0},
            breaker={"failure_threshold": 1000},
        )
        budget = RetryBudget(settings.budget, clock=fake_time.clock)
        client = OpenAICompatibleUpstream(
            settings, clock=fake_time.clock, sleep=fake_time.sleep, budget=budget
        )
        results = await asyncio.gather(*(collect(client.stream(QUESTION)) for _ in range(20)))
        await client.aclose()
    assert upstream.request_count == 20 + 3
    assert sum(len(notices(items)) for items in results) == 3


async def test_open_circuit_fails_new_streams_fast(make_client: ClientFactory) -> None:
    async with FaultUpstream(default=ALWAYS_503) as upstream:
        client = make_client(
            upstream.base_url, retry={"max_attempts": 2}, breaker={"failure_threshold": 2}
        )
        first = (await collect(client.stream(QUESTION))).terminal
        assert isinstance(first, Failed)
        assert client.breaker.state is BreakerState.open
        with pytest.raises(CircuitOpen) as raised:
            client.ensure_available()
        assert raised.value.retry_after_s is not None and raised.value.retry_after_s > 0
        items = await collect(client.stream(QUESTION))
    [failed] = items
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, CircuitOpen)
    assert failed.error.retry_after_s is not None and failed.error.retry_after_s > 0
    assert failed.attempts == 0
    assert upstream.request_count == 2


async def test_parked_stream_probes_and_failed_probes_cost_no_attempts(
    make_client: ClientFactory, fake_time: FakeTime
) -> None:
    """max_attempts 2, yet two failed probes later the answer still completes."""
    plan = [ALWAYS_503, ALWAYS_503, ALWAYS_503]
    async with FaultUpstream(plan, default=Complete()) as upstream:
        client = make_client(
            upstream.base_url,
            retry={"max_attempts": 2},
            breaker={"failure_threshold": 1, "open_s": 1.0, "max_open_s": 8.0},
        )
        budget_before = client.budget.tokens
        items = await collect(client.stream(QUESTION))
    assert [(n.attempt, n.max_attempts, n.reason) for n in notices(items)] == [
        (2, 2, "circuit_open"),
        (3, 3, "circuit_open"),
        (4, 4, "circuit_open"),
    ]
    done = items.terminal
    assert isinstance(done, Completed)
    assert done.attempts == 4 == upstream.request_count
    assert items.text == QUESTION_ANSWER
    assert client.breaker.state is BreakerState.closed
    assert client.budget.tokens == pytest.approx(min(10.0, budget_before + 0.1))
    # open periods 1, 2, 4 s nominal (+-20 %), each waited exactly, nothing sent meanwhile
    assert len(fake_time.sleeps) == 3
    for waited, nominal in zip(fake_time.sleeps, (1.0, 2.0, 4.0), strict=True):
        assert 0.8 * nominal <= waited <= 1.2 * nominal


async def test_parked_streams_are_released_after_the_probe() -> None:
    """Real time: both first attempts fail, one stream probes, the other is released."""
    plan = [Status(503, delay_s=0.1), Status(503, delay_s=0.1)]
    async with FaultUpstream(plan) as upstream:
        settings = settings_for(
            upstream.base_url,
            budget={"burst": 2.0, "ratio": 0.0, "min_per_s": 0.0},
            breaker={"failure_threshold": 1, "open_s": 0.05, "release_window_s": 0.05},
        )
        client = OpenAICompatibleUpstream(settings, rng=random.Random(3))
        a, b = await asyncio.gather(
            collect(client.stream(QUESTION)), collect(client.stream(QUESTION))
        )
        tokens = client.budget.tokens
        await client.aclose()
    answer = QUESTION_ANSWER
    assert a.text == b.text == answer
    assert upstream.request_count == 4
    reasons = sorted([n.reason for n in notices(a)] + [n.reason for n in notices(b)])
    assert reasons == ["circuit_closed", "circuit_open", "circuit_open"]
    released = next(n for n in notices(a) + notices(b) if n.reason == "circuit_closed")
    assert 0 <= released.delay_s <= 0.05
    assert tokens == pytest.approx(2.0)  # neither the probe nor the released retry spent budget


async def test_parked_stream_fails_at_its_deadline(
    make_client: ClientFactory, fake_time: FakeTime
) -> None:
    async with FaultUpstream(default=ALWAYS_503) as upstream:
        client = make_client(
            upstream.base_url,
            retry={"deadline_s": 5.0},
            breaker={"failure_threshold": 1, "open_s": 1.0, "max_open_s": 100.0},
        )
        items = await collect(client.stream(QUESTION))
    error = items.error
    assert isinstance(error, RetriesExhausted)
    assert error.details == {"reason": "circuit_open"}
    # probes at ~1 s and ~1+2 s fail; the next (~4 s later) would pass the 5 s deadline
    assert upstream.request_count == 3
    assert fake_time.now - 1000.0 == pytest.approx(5.0)


def test_settings_defaults_reach_the_benchmark_goals() -> None:
    """The herd goal needs a probe soon after recovery: open periods stay short."""
    breaker = UpstreamSettings().breaker
    assert breaker.max_open_s * 1.2 + breaker.release_window_s <= 5.0
