"""The ``KeyLimiter`` contract, run against every adapter (``limiter_factory``): stream slots,
the token bucket with its refill, overrides, the refusals' shape and jitter, the counters.

Time is a ``ManualClock``: refill is shown by advancing it, never by waiting.
"""

from __future__ import annotations

import logging
import math
import random
from typing import Any

import pytest

from rag_service.errors import RateLimited
from rag_service.limits import InMemoryKeyLimiter
from rag_service.limits.memory import SWEEP_INTERVAL_S
from rag_service.ports import KeyLimiter, StreamSlot
from rag_service.settings import KeyLimitSettings
from tests.fakes.retrieval import ManualClock
from tests.limits.conftest import ID_A, ID_B, LimiterFactory

# Plenty of everything but what a test is about.
ROOMY = {"streams": 1000, "requests_per_s": 1000.0, "burst": 1000}
REFUSALS_LOGGER = "rag_service.ports.key_limits"
REFUSAL_LOG_INTERVAL_S = 60.0  # rag_service.ports.key_limits: one line per key per minute


def make(
    factory: LimiterFactory, clock: ManualClock | None = None, seed: int = 1, **limits: Any
) -> KeyLimiter:
    settings = KeyLimitSettings.model_validate(ROOMY | limits)
    return factory(settings, clock or ManualClock(), random.Random(seed))


async def refusal(limiter: KeyLimiter, key_id: str) -> RateLimited:
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(key_id)
    return refused.value


async def admit_all(limiter: KeyLimiter, key_id: str, count: int) -> list[StreamSlot]:
    return [await limiter.admit(key_id) for _ in range(count)]


async def test_a_key_at_its_stream_limit_is_refused_until_a_slot_is_released(
    limiter_factory: LimiterFactory,
) -> None:
    limiter = make(limiter_factory, streams=3)
    slots = await admit_all(limiter, ID_A, 3)

    error = await refusal(limiter, ID_A)

    assert error.http_status == 429
    assert error.retryable is True
    assert error.to_payload()["code"] == "rate_limited"
    assert error.details == {"reason": "streams", "limit": 3}
    assert error.retry_after_s is not None
    assert 1.0 <= error.retry_after_s <= 3.0
    slots[0].release()
    await limiter.admit(ID_A)  # the freed slot
    await refusal(limiter, ID_A)


async def test_releasing_a_slot_twice_frees_it_once(limiter_factory: LimiterFactory) -> None:
    limiter = make(limiter_factory, streams=2)
    first, _ = await admit_all(limiter, ID_A, 2)

    first.release()
    first.release()

    await limiter.admit(ID_A)
    await refusal(limiter, ID_A)


async def test_keys_are_limited_separately(limiter_factory: LimiterFactory) -> None:
    limiter = make(limiter_factory, streams=2, requests_per_s=1.0, burst=2)
    await admit_all(limiter, ID_A, 2)
    await refusal(limiter, ID_A)

    await admit_all(limiter, ID_B, 2)


async def test_the_bucket_allows_a_burst_then_refuses_until_it_refills(
    limiter_factory: LimiterFactory,
) -> None:
    clock = ManualClock()
    limiter = make(limiter_factory, clock, requests_per_s=2.0, burst=4)
    for slot in await admit_all(limiter, ID_A, 4):
        slot.release()  # streams are not what this is about

    error = await refusal(limiter, ID_A)

    assert error.details == {"reason": "rate", "limit": 2.0, "burst": 4}
    assert error.retry_after_s is not None
    # One token comes after 1 / 2 s; the jitter adds up to a second on top.
    assert 0.5 <= error.retry_after_s <= 1.5
    clock.advance(0.4)
    await refusal(limiter, ID_A)
    clock.advance(0.1)  # 0.5 s: one token
    await limiter.admit(ID_A)
    await refusal(limiter, ID_A)
    clock.advance(60.0)  # a full bucket, no more: the burst again
    await admit_all(limiter, ID_A, 4)
    await refusal(limiter, ID_A)


async def test_the_rate_refusal_says_how_long_until_the_next_token(
    limiter_factory: LimiterFactory,
) -> None:
    clock = ManualClock()
    limiter = make(limiter_factory, clock, requests_per_s=0.1, burst=1)
    await limiter.admit(ID_A)
    clock.advance(2.0)  # 0.2 of a token back: 8 s to go

    error = await refusal(limiter, ID_A)

    assert error.retry_after_s is not None
    assert 8.0 <= error.retry_after_s <= 9.0
    assert math.ceil(error.retry_after_s) in {8, 9}  # the Retry-After header's whole seconds


async def test_a_refused_request_spends_no_token(limiter_factory: LimiterFactory) -> None:
    clock = ManualClock()
    limiter = make(limiter_factory, clock, streams=1, requests_per_s=1.0, burst=2)
    slot = await limiter.admit(ID_A)
    for _ in range(5):
        assert (await refusal(limiter, ID_A)).details["reason"] == "streams"

    slot.release()

    await limiter.admit(ID_A)  # the second token of the burst is still there


async def test_retry_after_is_jittered(limiter_factory: LimiterFactory) -> None:
    by_streams = make(limiter_factory, seed=3, streams=1)
    by_rate = make(limiter_factory, seed=4, requests_per_s=1.0, burst=1)
    await by_streams.admit(ID_A)
    (await by_rate.admit(ID_A)).release()

    stream_waits = {(await refusal(by_streams, ID_A)).retry_after_s for _ in range(10)}
    rate_waits = {(await refusal(by_rate, ID_A)).retry_after_s for _ in range(10)}

    assert len(stream_waits) > 1
    assert len(rate_waits) > 1


async def test_an_override_changes_only_its_key_and_only_the_fields_it_sets(
    limiter_factory: LimiterFactory,
) -> None:
    limiter = make(
        limiter_factory,
        streams=2,
        requests_per_s=1.0,
        burst=3,
        overrides={ID_B: {"streams": 5}},
    )

    await admit_all(limiter, ID_A, 2)
    assert (await refusal(limiter, ID_A)).details == {"reason": "streams", "limit": 2}
    await admit_all(limiter, ID_B, 3)  # streams 5, but the default burst of 3 still applies
    assert (await refusal(limiter, ID_B)).details == {"reason": "rate", "limit": 1.0, "burst": 3}


async def test_an_override_can_lower_a_key_below_the_defaults(
    limiter_factory: LimiterFactory,
) -> None:
    limiter = make(limiter_factory, overrides={ID_A: {"requests_per_s": 0.5, "burst": 1}})

    (await limiter.admit(ID_A)).release()

    assert (await refusal(limiter, ID_A)).details == {"reason": "rate", "limit": 0.5, "burst": 1}
    await admit_all(limiter, ID_B, 10)


async def test_the_stats_count_refusals_by_reason(limiter_factory: LimiterFactory) -> None:
    limiter = make(limiter_factory, streams=1, overrides={ID_B: {"burst": 1}})
    await limiter.admit(ID_A)
    for _ in range(3):
        await refusal(limiter, ID_A)
    (await limiter.admit(ID_B)).release()
    for _ in range(2):
        await refusal(limiter, ID_B)

    stats = limiter.stats()

    assert (stats.refused_streams, stats.refused_rate) == (3, 2)


# -- the in-memory adapter's own promises ---------------------------------------------------------


async def test_memory_forgets_a_key_that_stopped_calling_once_its_bucket_is_full() -> None:
    clock = ManualClock()
    limiter = InMemoryKeyLimiter(
        KeyLimitSettings(streams=5, requests_per_s=1.0, burst=5), clock=clock
    )
    holding = await limiter.admit(ID_A)
    (await limiter.admit(ID_B)).release()
    assert limiter.stats().keys_tracked == 2

    clock.advance(SWEEP_INTERVAL_S)
    (await limiter.admit(ID_B)).release()  # any call lets the sweep run

    assert limiter.stats().keys_tracked == 2  # A holds a stream; B has just called
    holding.release()
    clock.advance(SWEEP_INTERVAL_S)
    await limiter.admit(ID_A)
    assert limiter.stats().keys_tracked == 1  # B, idle with a full bucket, is forgotten


async def test_a_key_refused_again_and_again_is_logged_once_per_interval(
    limiter_factory: LimiterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A flood of refusals must not become a flood of log lines: one per key per interval."""
    clock = ManualClock()
    # Out of requests for far longer than the interval: a token per 1,000 s, a burst of one.
    limiter = make(limiter_factory, clock, requests_per_s=0.001, burst=1)
    await admit_all(limiter, ID_A, 1)
    await admit_all(limiter, ID_B, 1)

    def lines(key_id: str) -> int:
        return sum(
            record.name == REFUSALS_LOGGER and key_id in record.getMessage()
            for record in caplog.records
        )

    with caplog.at_level(logging.WARNING, logger=REFUSALS_LOGGER):
        for _ in range(5):
            await refusal(limiter, ID_A)
        assert lines(ID_A) == 1
        await refusal(limiter, ID_B)  # another key has its own line
        assert lines(ID_B) == 1
        clock.advance(REFUSAL_LOG_INTERVAL_S)
        await refusal(limiter, ID_A)
        assert lines(ID_A) == 2
