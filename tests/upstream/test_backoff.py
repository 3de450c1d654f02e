"""Backoff delays (exact with a seeded rng) and Retry-After parsing."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from rag_service.settings import JitterMode, RetrySettings
from rag_service.upstream.backoff import BackoffSchedule
from rag_service.upstream.classify import parse_retry_after

SEED = 99


def delays(jitter: JitterMode, count: int, **settings: float) -> list[float]:
    schedule = BackoffSchedule(
        RetrySettings(jitter=jitter, **settings),
        random.Random(SEED),
    )
    return [schedule.next_delay() for _ in range(count)]


def test_full_jitter_draws_from_zero_to_the_capped_exponential_step() -> None:
    rng = random.Random(SEED)
    expected = [rng.uniform(0, step) for step in (0.5, 1.0, 2.0, 4.0, 5.0, 5.0)]
    assert delays(JitterMode.full, 6, base_delay_s=0.5, max_delay_s=5.0) == expected


def test_equal_jitter_keeps_half_the_step() -> None:
    rng = random.Random(SEED)
    expected = [s / 2 + rng.uniform(0, s / 2) for s in (1.0, 2.0, 4.0, 6.0, 6.0)]
    actual = delays(JitterMode.equal, 5, base_delay_s=1.0, max_delay_s=6.0)
    assert actual == expected
    assert all(d >= s / 2 for d, s in zip(actual, (1.0, 2.0, 4.0, 6.0, 6.0), strict=True))


def test_decorrelated_jitter_grows_from_the_previous_delay() -> None:
    rng = random.Random(SEED)
    expected, previous = [], 0.5
    for _ in range(6):
        previous = min(3.0, rng.uniform(0.5, previous * 3))
        expected.append(previous)
    assert delays(JitterMode.decorrelated, 6, base_delay_s=0.5, max_delay_s=3.0) == expected


@pytest.mark.parametrize("jitter", list(JitterMode))
def test_cap_holds_for_every_mode_even_after_many_retries(jitter: JitterMode) -> None:
    values = delays(jitter, 200, base_delay_s=0.5, max_delay_s=2.0)
    assert max(values) <= 2.0
    assert min(values) >= 0.0


def test_retry_after_is_a_floor_plus_at_most_ten_percent() -> None:
    schedule = BackoffSchedule(RetrySettings(base_delay_s=0.5), random.Random(SEED))
    rng = random.Random(SEED)
    backoff = rng.uniform(0, 0.5)
    floor = 3.0 + rng.uniform(0, 0.3)
    assert schedule.next_delay(retry_after_s=3.0) == max(backoff, floor)
    assert 3.0 <= floor <= 3.3


def test_retry_after_below_the_backoff_keeps_the_backoff() -> None:
    schedule = BackoffSchedule(
        RetrySettings(base_delay_s=10.0, max_delay_s=10.0, jitter=JitterMode.equal),
        random.Random(SEED),
    )
    assert schedule.next_delay(retry_after_s=0.1) >= 5.0


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # the precise one wins
        ({"retry-after-ms": "nan", "retry-after": "9"}, 9.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


def test_parse_retry_after_http_date() -> None:
    when = format_datetime(datetime.fromtimestamp(NOW + 42, tz=UTC), usegmt=True)
    assert parse_retry_after({"retry-after": when}, now=NOW) == pytest.approx(42.0)
    past = format_datetime(datetime.fromtimestamp(NOW - 42, tz=UTC), usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=NOW) == 0.0
