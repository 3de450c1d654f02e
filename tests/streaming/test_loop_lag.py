"""LoopLagMonitor on a real event loop: a loop held by blocking work reads as behind.

The loop is held by sleeping inside it (``hold_the_loop``), so the lag measured has a hard lower bound (the
time slept minus one interval); no assertion depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from rag_service.streaming.loop_lag import LoopLagMonitor
from tests.streaming.helpers import hold_the_loop

INTERVAL_S = 0.02
HOLD_S = 0.3


WAIT_LIMIT_S = 10.0  # generous: a busy machine delays timers; only a hang reaches it


@pytest.fixture
async def observed() -> AsyncIterator[tuple[LoopLagMonitor, list[float]]]:
    """A started monitor and the lag samples it observes; closed after the test."""
    samples: list[float] = []
    monitor = LoopLagMonitor(INTERVAL_S, observe=samples.append)
    monitor.start()
    yield monitor, samples
    monitor.close()


async def until_observed(samples: list[float], count: int) -> None:
    """Until the monitor's timer has fired (and observed) ``count`` times."""
    async with asyncio.timeout(WAIT_LIMIT_S):
        while len(samples) < count:  # noqa: ASYNC110 - the firings are the monitor's timer's
            await asyncio.sleep(INTERVAL_S)


async def test_not_started_or_closed_reads_zero() -> None:
    monitor = LoopLagMonitor(INTERVAL_S)
    assert monitor.lag_s() == 0.0

    monitor.start()
    hold_the_loop(HOLD_S)
    assert monitor.lag_s() > 0.0
    monitor.close()

    assert monitor.lag_s() == 0.0


async def test_a_held_loop_reads_as_behind_before_the_timer_gets_to_run(
    observed: tuple[LoopLagMonitor, list[float]],
) -> None:
    monitor, samples = observed
    hold_the_loop(HOLD_S)  # the loop is held: the pending firing is overdue

    assert monitor.lag_s() >= HOLD_S - INTERVAL_S
    assert samples == []  # no firing ran yet: the lag comes from the overdue timer


async def test_the_late_firing_is_observed_and_kept_until_the_next_one(
    observed: tuple[LoopLagMonitor, list[float]],
) -> None:
    monitor, samples = observed
    hold_the_loop(HOLD_S)
    for _ in range(10):  # a few loop iterations, without time passing: the firing runs
        if samples:
            break
        await asyncio.sleep(0)

    assert len(samples) == 1
    assert samples[0] >= HOLD_S - INTERVAL_S
    assert monitor.lag_s() == pytest.approx(samples[0], abs=INTERVAL_S)


async def test_the_lag_falls_back_once_the_loop_runs_on_time_again(
    observed: tuple[LoopLagMonitor, list[float]],
) -> None:
    monitor, samples = observed
    hold_the_loop(HOLD_S)
    await until_observed(samples, 3)  # the late firing, then firings on time

    assert samples[0] >= HOLD_S - INTERVAL_S
    assert len(samples) >= 2
    assert samples[-1] < samples[0]
    assert monitor.lag_s() < samples[0]


async def test_start_twice_keeps_one_timer() -> None:
    samples: list[float] = []
    monitor = LoopLagMonitor(INTERVAL_S, observe=samples.append)
    monitor.start()
    monitor.start()
    try:
        await asyncio.sleep(INTERVAL_S * 5.5)
    finally:
        monitor.close()

    assert 1 <= len(samples) <= 5  # two timers would fire up to ten times


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        LoopLagMonitor(0.0)
