"""CatalogVersionWatch: background checks, publishes from this process, failures, shutdown."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from rag_service.errors import VectorStoreUnavailable
from rag_service.retrieval.catalog_version import CatalogVersionWatch
from tests.fakes.retrieval import ManualClock
from tests.retrieval.conftest import VersionGatedSearch, wait_until

WatchFactory = Callable[..., CatalogVersionWatch]


@pytest.fixture
async def make_watch(store: VersionGatedSearch, clock: ManualClock) -> AsyncIterator[WatchFactory]:
    built: list[CatalogVersionWatch] = []

    def factory(*, interval_s: float = 3600.0, timeout_s: float = 2.0) -> CatalogVersionWatch:
        watch = CatalogVersionWatch(store, clock=clock, interval_s=interval_s, timeout_s=timeout_s)
        built.append(watch)
        return watch

    yield factory
    store.version_gate.open()
    for watch in built:
        await watch.aclose()


async def test_nothing_is_known_before_the_first_check(
    make_watch: WatchFactory, store: VersionGatedSearch
) -> None:
    watch = make_watch()

    assert (watch.known, watch.checked_at) == (None, None)
    assert store.live_version_calls == 0


async def test_start_learns_the_version_before_returning(
    make_watch: WatchFactory, store: VersionGatedSearch, clock: ManualClock
) -> None:
    watch = make_watch()

    await watch.start()

    assert (watch.known, watch.checked_at, watch.running) == (1, clock(), True)
    assert (store.live_version_calls, watch.checks) == (1, 1)


async def test_reading_the_known_version_never_asks_the_store(
    make_watch: WatchFactory, store: VersionGatedSearch
) -> None:
    watch = make_watch()
    await watch.refresh()
    store.bump_version()

    assert [watch.known for _ in range(100)] == [1] * 100
    assert store.live_version_calls == 1


async def test_the_background_task_notices_another_process_publishing(
    make_watch: WatchFactory, store: VersionGatedSearch
) -> None:
    watch = make_watch(interval_s=0.01)
    await watch.start()

    store.bump_version()

    await wait_until(lambda: watch.known == 2)
    await wait_until(lambda: watch.checks >= 3)  # and it goes on checking
    assert watch.known == 2


async def test_wake_checks_now_instead_of_after_the_interval(
    make_watch: WatchFactory, store: VersionGatedSearch
) -> None:
    watch = make_watch(interval_s=3600)
    await watch.start()
    store.bump_version()

    watch.wake()

    await wait_until(lambda: watch.known == 2)
    assert store.live_version_calls == 2


async def test_published_counts_at_once(
    make_watch: WatchFactory, store: VersionGatedSearch, clock: ManualClock
) -> None:
    watch = make_watch()
    await watch.refresh()
    clock.advance(5)

    watch.published(4)

    assert (watch.known, watch.checked_at) == (4, clock())
    assert store.live_version_calls == 1


async def test_a_read_that_started_before_a_publish_does_not_undo_it(
    make_watch: WatchFactory, store: VersionGatedSearch
) -> None:
    watch = make_watch()
    await watch.refresh()
    store.version_gate.close()
    check = asyncio.create_task(watch.refresh())
    await wait_until(lambda: store.version_gate.waiting == 1)
    # The read above saw version 1 in the store; then this process publishes version 2.
    watch.published(2)
    store.version_gate.open()

    assert await check == 2
    assert watch.known == 2
    # A read that starts after the publish is believed again.
    store.version = 3
    assert await watch.refresh() == 3


async def test_a_failing_store_keeps_the_last_version_and_warns_once(
    make_watch: WatchFactory, store: VersionGatedSearch, caplog: pytest.LogCaptureFixture
) -> None:
    watch = make_watch()
    await watch.refresh()
    store.fail_live_version = True
    caplog.set_level(logging.DEBUG, logger="rag_service.retrieval.catalog_version")

    results = [await watch.refresh() for _ in range(3)]
    store.fail_live_version = False
    store.bump_version()
    recovered = await watch.refresh()

    assert (results, recovered) == ([1, 1, 1], 2)
    assert (watch.checks, watch.failures) == (5, 3)
    levels = [(r.levelname, r.getMessage().split(" (")[0]) for r in caplog.records]
    assert levels == [
        ("WARNING", "catalog version check failed"),
        ("DEBUG", "catalog version check failed again"),
        ("DEBUG", "catalog version check failed again"),
        ("INFO", "catalog version check answers again after 3 failed checks"),
        ("INFO", "live catalog version is now 2"),
    ]


async def wait_until_answer(
    check: Callable[[], Awaitable[int | None]], expected: int, timeout_s: float = 30.0
) -> None:
    """Repeat ``check`` until it answers ``expected``; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while await check() != expected:
        assert time.monotonic() < deadline, f"no answer {expected} within {timeout_s:g} s"


async def test_a_slow_store_times_out_and_later_checks_join_the_same_call(
    make_watch: WatchFactory, store: VersionGatedSearch
) -> None:
    watch = make_watch(timeout_s=0.2)
    # The first check may itself time out on a busy machine: it is not what is tested.
    await wait_until_answer(watch.refresh, 1)
    failures_before = watch.failures
    store.version_gate.close()
    store.bump_version()

    assert await watch.refresh() == 1
    assert await watch.refresh() == 1
    assert store.version_gate.waiting == 1  # one store call hangs, not one per check
    assert watch.failures == failures_before + 2

    store.version_gate.open()
    await wait_until(lambda: store.live_version_calls == 2)
    assert await watch.refresh() == 2


async def test_an_unexpected_error_does_not_end_the_background_task(
    make_watch: WatchFactory, store: VersionGatedSearch
) -> None:
    watch = make_watch(interval_s=0.01)
    await watch.start()
    store.version_error = RuntimeError("a bug in the adapter")

    await wait_until(lambda: watch.failures == 1)
    store.bump_version()

    await wait_until(lambda: watch.known == 2)
    assert watch.running


async def test_start_survives_a_store_that_is_down(
    make_watch: WatchFactory, store: VersionGatedSearch
) -> None:
    store.version_error = VectorStoreUnavailable("down at start-up")
    watch = make_watch(interval_s=0.01)

    await watch.start()

    assert (watch.known, watch.failures, watch.running) == (None, 1, True)
    await wait_until(lambda: watch.known == 1)


async def test_aclose_stops_the_background_task(
    make_watch: WatchFactory, store: VersionGatedSearch
) -> None:
    watch = make_watch(interval_s=0.01)
    await watch.start()
    await wait_until(lambda: watch.checks >= 2)

    await watch.aclose()

    assert not watch.running
    calls = store.live_version_calls
    watch.wake()
    await asyncio.sleep(0.05)  # five intervals in which a running task would have checked
    await watch.aclose()  # idempotent
    assert store.live_version_calls == calls


async def test_aclose_does_not_wait_for_a_hanging_store(
    make_watch: WatchFactory, store: VersionGatedSearch
) -> None:
    watch = make_watch(interval_s=0.01, timeout_s=60)
    await watch.start()
    store.version_gate.close()
    await wait_until(lambda: store.version_gate.waiting == 1)

    await watch.aclose()

    assert not watch.running
