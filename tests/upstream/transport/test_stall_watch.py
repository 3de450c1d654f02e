"""``StallWatch``: one periodic timer checks every watched connection's read timeout."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from rag_service.upstream.stall_watch import MAX_PERIOD_S, MIN_PERIOD_S, StallWatch

WAIT_LIMIT_S = 5.0


class Recorder:
    """A watched connection that records its checks; it unwatches itself after ``checks_left``."""

    def __init__(self, watch: StallWatch, checks_left: int = 1_000) -> None:
        self.watch = watch
        self.checks: list[float] = []
        self.checks_left = checks_left

    def check_stall(self, now: float) -> None:
        self.checks.append(now)
        self.checks_left -= 1
        if self.checks_left == 0:
            self.watch.discard(self)


async def wait_for_checks(connection: Recorder, count: int) -> None:
    async with asyncio.timeout(WAIT_LIMIT_S):
        while len(connection.checks) < count:  # noqa: ASYNC110 - the watch's timer calls it
            await asyncio.sleep(0.005)


@pytest.mark.parametrize(
    ("read_timeout_s", "period_s"),
    [(0.2, 0.05), (0.0001, MIN_PERIOD_S), (3600.0, MAX_PERIOD_S)],
    ids=["a quarter of it", "at most every 10 ms", "at least every second"],
)
async def test_a_watched_connection_is_checked_once_per_period(
    read_timeout_s: float, period_s: float
) -> None:
    watch = StallWatch()
    connection = Recorder(watch)
    watch.add(connection, read_timeout_s=read_timeout_s)

    await wait_for_checks(connection, 3)

    gaps = [b - a for a, b in itertools.pairwise(connection.checks)]
    assert all(gap >= period_s - 0.002 for gap in gaps), gaps  # loop.time() granularity
    watch.close()


async def test_a_shorter_read_timeout_shortens_the_period_for_all() -> None:
    watch = StallWatch()
    slow = Recorder(watch)
    watch.add(slow, read_timeout_s=60.0)  # a 1 s period (the longest)
    fast = Recorder(watch)
    watch.add(fast, read_timeout_s=0.04)  # 10 ms from now on

    await wait_for_checks(slow, 3)  # would take 3 s at the old period

    assert len(fast.checks) >= 3
    watch.close()


async def test_the_timer_stops_when_nothing_is_watched_and_starts_again() -> None:
    watch = StallWatch()
    once = Recorder(watch, checks_left=1)
    watch.add(once, read_timeout_s=0.04)

    await wait_for_checks(once, 1)
    await asyncio.sleep(0.05)

    assert len(watch) == 0 and watch._timer is None
    assert len(once.checks) == 1
    again = Recorder(watch)
    watch.add(again, read_timeout_s=0.04)
    await wait_for_checks(again, 1)
    watch.close()
    assert watch._timer is None


async def test_a_check_that_unwatches_its_connection_does_not_skip_the_others() -> None:
    watch = StallWatch()
    connections = [Recorder(watch, checks_left=1 if i % 2 else 1_000) for i in range(10)]
    for connection in connections:
        watch.add(connection, read_timeout_s=0.04)

    await wait_for_checks(connections[0], 2)

    assert all(len(c.checks) >= 1 for c in connections)
    assert len(watch) == 5
    watch.close()
