"""Single flight: concurrent resolves for one contextId share one retrieval."""

from __future__ import annotations

import asyncio

import pytest

from rag_service.domain import ContextState, ResolvedContext
from rag_service.errors import VectorStoreUnavailable
from rag_service.retrieval import ContextService
from rag_service.retrieval.single_flight import SingleFlight
from tests.fakes.retrieval import HashingEmbedder, InMemoryPassageSearch, ManualClock
from tests.retrieval.conftest import wait_until

QUESTION = "Is the two person tent waterproof?"


async def joined_to_one_retrieval(
    service: ContextService, embedder: HashingEmbedder, count: int, context_id: str = "c1"
) -> list[asyncio.Task[ResolvedContext]]:
    """``count`` resolves of ``context_id``, all joined to one retrieval held in its embedding
    (the embedder's gate is closed; a test opens it)."""
    embedder.gate.close()
    tasks = [asyncio.create_task(service.resolve(context_id, QUESTION)) for _ in range(count)]
    await wait_until(lambda: service.stats().coalesced == count - 1 and embedder.gate.waiting == 1)
    return tasks


async def test_200_concurrent_resolves_of_a_stale_context_retrieve_once(
    service: ContextService,
    embedder: HashingEmbedder,
    store: InMemoryPassageSearch,
    clock: ManualClock,
) -> None:
    await service.resolve("hot", QUESTION)
    clock.advance(301)  # expired; the version check is due too

    # Hold the retrieval until every request has joined it; with no single flight the
    # count of joined requests would never reach 199 and this would time out.
    tasks = await joined_to_one_retrieval(service, embedder, 200, context_id="hot")
    embedder.gate.open()
    results = await asyncio.gather(*tasks)

    assert {r.state for r in results} == {ContextState.refreshed}
    assert all(r.passages is results[0].passages for r in results)  # one shared result
    assert [p.doc_id for p in results[0].passages] == ["TNT-00017", "TNT-00018"]
    stats = service.stats()
    assert (stats.retrievals, stats.refreshes, stats.in_flight) == (2, 201, 0)
    assert (embedder.calls, store.search_calls) == (2, 2)


async def test_concurrent_first_requests_share_one_retrieval(
    service: ContextService, store: InMemoryPassageSearch
) -> None:
    results = await asyncio.gather(*(service.resolve("new", QUESTION) for _ in range(50)))

    assert {r.state for r in results} == {ContextState.refreshed}
    assert store.search_calls == 1
    assert store.live_version_calls == 1  # the one at start-up; requests never ask


async def test_different_context_ids_are_not_merged(
    service: ContextService, embedder: HashingEmbedder, store: InMemoryPassageSearch
) -> None:
    embedder.gate.close()
    first = asyncio.create_task(service.resolve("a", QUESTION))
    second = asyncio.create_task(service.resolve("b", "hiking boots sizes"))
    await wait_until(lambda: embedder.gate.waiting == 2)
    embedder.gate.open()

    a, b = await asyncio.gather(first, second)

    assert [p.doc_id for p in a.passages] == ["TNT-00017", "TNT-00018"]
    assert [p.doc_id for p in b.passages] == ["BOT-00003"]
    assert service.stats().retrievals == 2
    assert service.stats().coalesced == 0


async def test_a_cancelled_waiter_does_not_disturb_the_others(
    service: ContextService, embedder: HashingEmbedder
) -> None:
    leader, *waiters = await joined_to_one_retrieval(service, embedder, 4)

    waiters[0].cancel()
    await asyncio.sleep(0)
    embedder.gate.open()
    rest = await asyncio.gather(leader, *waiters[1:])

    assert waiters[0].cancelled()
    assert {r.state for r in rest} == {ContextState.refreshed}
    assert service.stats().retrievals == 1


async def test_a_cancelled_leader_does_not_cancel_the_shared_retrieval(
    service: ContextService, embedder: HashingEmbedder
) -> None:
    leader, waiter = await joined_to_one_retrieval(service, embedder, 2)

    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    embedder.gate.open()
    result = await waiter

    assert result.state is ContextState.refreshed
    assert service.stats().retrievals == 1


async def test_work_completes_and_is_cached_when_every_caller_left(
    service: ContextService, embedder: HashingEmbedder
) -> None:
    [only] = await joined_to_one_retrieval(service, embedder, 1)
    only.cancel()
    embedder.gate.open()
    await wait_until(lambda: service.stats().in_flight == 0)

    resolved = await service.resolve("c1", QUESTION)

    assert resolved.state is ContextState.fresh
    assert service.stats().retrievals == 1


async def test_a_shared_failure_reaches_every_waiter_as_fallback(
    service: ContextService, embedder: HashingEmbedder, store: InMemoryPassageSearch
) -> None:
    store.fail_search = True
    tasks = await joined_to_one_retrieval(service, embedder, 10)
    embedder.gate.open()

    results = await asyncio.gather(*tasks)

    assert {r.state for r in results} == {ContextState.fallback}
    assert store.search_calls == 1


async def test_single_flight_forgets_finished_keys() -> None:
    flight: SingleFlight[str, int] = SingleFlight()

    async def work() -> int:
        await asyncio.sleep(0)
        return 7

    results = await asyncio.gather(*(flight.run("k", work) for _ in range(5)))

    assert results == [7] * 5
    assert len(flight) == 0
    assert not flight.is_running("k")


async def test_single_flight_passes_errors_to_every_waiter_and_forgets() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    starts = 0

    async def work() -> int:
        nonlocal starts
        starts += 1
        await asyncio.sleep(0)
        raise VectorStoreUnavailable("down")

    results = await asyncio.gather(
        *(flight.run("k", work) for _ in range(3)), return_exceptions=True
    )

    assert starts == 1
    assert all(isinstance(r, VectorStoreUnavailable) for r in results)
    assert len(flight) == 0


async def test_single_flight_aclose_cancels_running_work() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    never = asyncio.Event()

    async def work() -> int:
        await never.wait()
        return 1

    caller = asyncio.create_task(flight.run("k", work))
    await asyncio.sleep(0)
    await flight.aclose()

    with pytest.raises(asyncio.CancelledError):
        await caller
    assert len(flight) == 0
