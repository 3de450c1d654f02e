"""The breaker's states taken from other replicas (fleet mode): adopt_open, adopt_closed and a
probe sent by another replica (probe_elsewhere)."""

from __future__ import annotations

from rag_service.domain import BreakerState
from rag_service.upstream.breaker import Permit
from tests.upstream.conftest import FakeTime
from tests.upstream.test_budget_breaker import make_breaker


def test_an_adopted_open_state_denies_until_the_same_reopen_time(fake_time: FakeTime) -> None:
    breaker = make_breaker(fake_time)
    seen: list[tuple[BreakerState, bool]] = []
    breaker.subscribe(lambda state: seen.append((state, breaker.adopting)))

    assert breaker.adopt_open(4.0, open_for_s=2.0)

    assert breaker.try_acquire() is Permit.denied
    assert breaker.seconds_until_probe() == 4.0
    assert seen == [(BreakerState.open, True)]  # listeners can tell it is not ours to share
    assert not breaker.adopt_open(1.0, open_for_s=2.0)  # open longer already: kept
    fake_time.now += 4.0
    assert breaker.try_acquire() is Permit.probe


def test_an_adopted_close_releases_the_circuit(fake_time: FakeTime) -> None:
    breaker = make_breaker(fake_time, failure_threshold=1)
    breaker.record_failure(breaker.try_acquire())
    assert breaker.state is BreakerState.open

    assert breaker.adopt_closed()

    assert breaker.try_acquire() is Permit.normal
    assert not breaker.adopt_closed()  # closed already


def test_a_probe_elsewhere_waits_for_its_verdict_at_most_its_lease(fake_time: FakeTime) -> None:
    breaker = make_breaker(fake_time, failure_threshold=1)
    breaker.record_failure(breaker.try_acquire())
    fake_time.now += 10
    probe = breaker.try_acquire()
    assert probe is Permit.probe

    breaker.probe_elsewhere(probe, lease_s=5.0)

    assert breaker.try_acquire() is Permit.denied
    assert breaker.seconds_until_probe() == 5.0
    fake_time.now += 5.0  # no verdict came: a probe may go again
    assert breaker.try_acquire() is Permit.probe
