"""Retry budget and circuit breaker state machines on a controllable clock."""

from __future__ import annotations

import asyncio
import random

import pytest

from rag_service.domain import BreakerState
from rag_service.settings import BreakerSettings, BudgetSettings
from rag_service.upstream.breaker import CircuitBreaker, Permit
from rag_service.upstream.budget import RetryBudget
from tests.upstream.conftest import FakeTime


def test_budget_starts_full_and_refuses_when_empty(fake_time: FakeTime) -> None:
    budget = RetryBudget(BudgetSettings(burst=3, ratio=0.1, min_per_s=0), clock=fake_time.clock)
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]
    assert budget.tokens == 0


def test_budget_earns_ratio_per_request_and_time(fake_time: FakeTime) -> None:
    budget = RetryBudget(BudgetSettings(burst=3, ratio=0.25, min_per_s=0.5), clock=fake_time.clock)
    while budget.try_spend():
        pass
    for _ in range(3):
        budget.record_request()
    assert budget.tokens == pytest.approx(0.75)
    assert not budget.try_spend()
    fake_time.now += 0.5  # +0.25 from time
    assert budget.try_spend()
    fake_time.now += 100
    assert budget.tokens == 3  # capped at burst


def test_budget_keeps_retries_near_the_ratio_under_sustained_failure(fake_time: FakeTime) -> None:
    """100 requests/s for 60 s, every one wanting a retry: retries stay ~ratio + floor."""
    budget = RetryBudget(BudgetSettings(burst=10, ratio=0.1, min_per_s=1), clock=fake_time.clock)
    granted = 0
    for _ in range(6000):
        fake_time.now += 0.01
        budget.record_request()
        granted += budget.try_spend()
    assert 600 <= granted <= 600 + 60 + 10  # ratio share + 1/s floor + initial burst


def make_breaker(fake_time: FakeTime, **settings: float) -> CircuitBreaker:
    defaults: dict[str, float] = {"failure_threshold": 3, "open_s": 2.0, "max_open_s": 5.0}
    return CircuitBreaker(
        BreakerSettings(**{**defaults, **settings}),
        clock=fake_time.clock,
        rng=random.Random(5),
    )


def open_period(seed: int, nominal: float, draws_before: int = 0) -> float:
    rng = random.Random(seed)
    for _ in range(draws_before):
        rng.random()
    return nominal * rng.uniform(0.8, 1.2)


def test_breaker_opens_after_threshold_consecutive_failures(fake_time: FakeTime) -> None:
    breaker = make_breaker(fake_time)
    for _ in range(2):
        breaker.record_failure(breaker.try_acquire())
    breaker.record_success(breaker.try_acquire())  # resets the streak
    for _ in range(2):
        breaker.record_failure(breaker.try_acquire())
    before = breaker.state
    breaker.record_failure(breaker.try_acquire())
    after = breaker.state
    assert (before, after) == (BreakerState.closed, BreakerState.open)
    assert breaker.try_acquire() is Permit.denied


def test_half_open_lets_exactly_one_probe_through_and_success_closes(fake_time: FakeTime) -> None:
    breaker = make_breaker(fake_time)
    for _ in range(3):
        breaker.record_failure(Permit.normal)
    period = open_period(5, 2.0)
    fake_time.now += period - 0.001
    assert breaker.try_acquire() is Permit.denied
    fake_time.now += 0.001
    half_open = breaker.state
    assert half_open is BreakerState.half_open
    probe = breaker.try_acquire()
    assert probe is Permit.probe
    assert [breaker.try_acquire() for _ in range(3)] == [Permit.denied] * 3
    assert breaker.seconds_until_probe() is None
    breaker.record_success(probe)
    assert breaker.state is BreakerState.closed
    assert breaker.try_acquire() is Permit.normal


def test_failed_probe_reopens_for_twice_as_long_up_to_the_cap(fake_time: FakeTime) -> None:
    breaker = make_breaker(fake_time)
    for _ in range(3):
        breaker.record_failure(Permit.normal)
    rng = random.Random(5)
    fake_time.now += 2.0 * rng.uniform(0.8, 1.2)
    for nominal in (4.0, 5.0, 5.0):  # 2 -> 4 -> capped at 5
        probe = breaker.try_acquire()
        assert probe is Permit.probe
        breaker.record_failure(probe)
        period = nominal * rng.uniform(0.8, 1.2)
        assert breaker.seconds_until_probe() == pytest.approx(period)
        fake_time.now += period
    probe = breaker.try_acquire()
    breaker.record_success(probe)
    for _ in range(3):
        breaker.record_failure(Permit.normal)
    assert breaker.seconds_until_probe() == pytest.approx(2.0 * rng.uniform(0.8, 1.2))


def test_abandoned_probe_frees_the_slot(fake_time: FakeTime) -> None:
    breaker = make_breaker(fake_time, failure_threshold=1)
    breaker.record_failure(Permit.normal)
    fake_time.now += 10
    probe = breaker.try_acquire()
    assert breaker.try_acquire() is Permit.denied
    breaker.release(probe)
    assert breaker.try_acquire() is Permit.probe


def test_outcomes_of_requests_started_before_opening_are_ignored(fake_time: FakeTime) -> None:
    breaker = make_breaker(fake_time, failure_threshold=1)
    early = breaker.try_acquire()
    breaker.record_failure(Permit.normal)
    breaker.record_success(early)
    assert breaker.state is BreakerState.open


def test_fail_fast_retry_after_is_jittered_remaining_open_time(fake_time: FakeTime) -> None:
    breaker = make_breaker(fake_time, failure_threshold=1)
    breaker.record_failure(Permit.normal)
    remaining = breaker.seconds_until_probe()
    assert remaining is not None
    hints = {round(breaker.retry_after_s(), 6) for _ in range(20)}
    assert len(hints) > 1
    assert all(remaining + 0.2 <= hint <= remaining + 1.0 for hint in hints)


def test_state_listeners_see_every_transition(fake_time: FakeTime) -> None:
    breaker = make_breaker(fake_time, failure_threshold=1)
    seen: list[BreakerState] = []
    breaker.subscribe(seen.append)
    breaker.record_failure(breaker.try_acquire())
    fake_time.now += 10
    breaker.record_failure(breaker.try_acquire())
    fake_time.now += 10
    breaker.record_success(breaker.try_acquire())
    assert seen == [
        BreakerState.open,
        BreakerState.half_open,
        BreakerState.open,
        BreakerState.half_open,
        BreakerState.closed,
    ]


async def test_wait_for_change_wakes_on_close_before_the_timeout() -> None:
    breaker = CircuitBreaker(BreakerSettings(failure_threshold=1, open_s=0.01))
    breaker.record_failure(Permit.normal)
    await asyncio.sleep(0.02)
    probe = breaker.try_acquire()
    waiter = asyncio.create_task(breaker.wait_for_change(30.0, asyncio.sleep))
    await asyncio.sleep(0)
    breaker.record_success(probe)
    await asyncio.wait_for(waiter, timeout=30.0)  # wakes at once; the bound only stops a hang
    assert breaker.state is BreakerState.closed


async def test_wait_for_change_times_out_with_the_injected_sleep(fake_time: FakeTime) -> None:
    breaker = make_breaker(fake_time)
    await breaker.wait_for_change(1.25, fake_time.sleep)
    assert fake_time.sleeps == [1.25]
