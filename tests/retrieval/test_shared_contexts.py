"""ContextService with shared entries (fleet mode): two services over one InProcessContextStore
behave as two replicas over Redis: a context retrieved by one is served by the other, a stale
context is retrieved once for both, an invalidation reaches both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from rag_service.domain import ContextState
from rag_service.retrieval import ContextService, Retriever
from rag_service.retrieval.shared_contexts import InProcessContextStore, SharedEntries
from rag_service.settings import FreshnessSettings
from tests.fakes.retrieval import HashingEmbedder, ManualClock
from tests.retrieval.conftest import FALLBACK_TEXT, VersionGatedSearch, wait_until

QUESTION = "Is the trail tent waterproof?"
Replicas = Callable[[], Awaitable[tuple[ContextService, ContextService]]]


@pytest.fixture
def shared() -> InProcessContextStore:
    return InProcessContextStore()


@pytest.fixture
async def replicas(
    retriever: Retriever,
    store: VersionGatedSearch,
    clock: ManualClock,
    shared: InProcessContextStore,
) -> AsyncIterator[Replicas]:
    built: list[ContextService] = []

    async def make() -> tuple[ContextService, ContextService]:
        for _ in range(2):
            settings = FreshnessSettings()
            entries = SharedEntries(
                shared, ttl_s=settings.ttl_seconds, lock_s=5.0, retry_interval_s=1.0
            )
            service = ContextService(
                retriever, store, settings, FALLBACK_TEXT, clock=clock, shared=entries
            )
            await service.check_catalog_version()
            built.append(service)
        return built[0], built[1]

    yield make
    for service in built:
        await service.aclose()


async def test_a_context_one_replica_retrieved_is_fresh_on_the_other(
    replicas: Replicas, embedder: HashingEmbedder
) -> None:
    a, b = await replicas()

    assert (await a.resolve("c1", QUESTION)).state is ContextState.refreshed
    served = await b.resolve("c1", QUESTION)

    assert served.state is ContextState.fresh
    assert b.stats().retrievals == 0
    assert embedder.calls == 1


async def test_one_retrieval_for_both_while_it_runs(
    replicas: Replicas, store: VersionGatedSearch
) -> None:
    a, b = await replicas()
    store.gate.close()  # A's search hangs until opened: B asks meanwhile
    first = asyncio.create_task(a.resolve("c2", QUESTION))
    await wait_until(lambda: store.gate.waiting == 1)
    second = asyncio.create_task(b.resolve("c2", QUESTION))
    await wait_until(lambda: b.stats().misses == 1)
    store.gate.open()

    from_a, from_b = await first, await second

    assert (from_a.state, from_b.state) == (ContextState.refreshed, ContextState.refreshed)
    assert from_a.passages == from_b.passages
    assert (a.stats().retrievals, b.stats().retrievals, b.stats().coalesced) == (1, 0, 1)


async def test_an_invalidation_on_one_replica_reaches_the_other(
    replicas: Replicas, shared: InProcessContextStore
) -> None:
    a, b = await replicas()
    await a.resolve("c3", QUESTION)
    assert (await b.resolve("c3", QUESTION)).state is ContextState.fresh

    a.invalidate("c3")
    for _ in range(100):  # the shared entry is deleted in the background
        if await shared.get("c3") is None:
            break
        await asyncio.sleep(0.01)

    assert (await b.resolve("c3", QUESTION)).state is ContextState.refreshed
