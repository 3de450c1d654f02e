"""One retrieval per stale context across replicas when it finds nothing (``SharedEntries``
over one ``InProcessContextStore``, as replicas over Redis): the replicas that waited for it
end with "nothing found" without doing the work again; a request after it ended does the work
again, and the note of an earlier run does not end a later wait."""

from __future__ import annotations

import asyncio

from rag_service.retrieval.shared_contexts import InProcessContextStore, SharedEntries
from tests.fakes.retrieval import ManualClock
from tests.retrieval.conftest import wait_until

LEASE_S = 30.0  # far longer than any test: a replica that waited it out would hang the test


def replica(store: InProcessContextStore, wall: ManualClock | None = None) -> SharedEntries:
    if wall is None:
        return SharedEntries(store, ttl_s=60, lock_s=LEASE_S, retry_interval_s=1)
    return SharedEntries(store, ttl_s=60, lock_s=LEASE_S, retry_interval_s=1, wall_clock=wall)


async def must_not_work() -> str | None:
    raise AssertionError("this replica must not do the work")


async def nothing_stored() -> str | None:
    return None


async def test_the_replicas_waiting_for_a_retrieval_that_found_nothing_end_with_nothing() -> None:
    store = InProcessContextStore()
    a, b, c = replica(store), replica(store), replica(store)
    release = asyncio.Event()
    runs: list[str] = []

    async def finds_nothing() -> str | None:
        runs.append("a")
        await release.wait()
        return None

    holder = asyncio.create_task(a.run_once("ctx", finds_nothing, nothing_stored))
    await wait_until(lambda: runs == ["a"])
    waiters = [
        asyncio.create_task(r.run_once("ctx", must_not_work, nothing_stored)) for r in (b, c)
    ]
    await wait_until(lambda: b.waiting == 1 and c.waiting == 1)
    release.set()

    assert await holder == (None, False)
    assert [await w for w in waiters] == [(None, True), (None, True)]
    assert runs == ["a"]
    assert (b.waiting, c.waiting) == (0, 0)


async def test_a_request_after_the_retrieval_ended_retrieves_again() -> None:
    store = InProcessContextStore()
    a, b = replica(store), replica(store)

    async def finds_nothing() -> str | None:
        return None

    async def finds_something() -> str | None:
        return "found now"

    assert await a.run_once("ctx", finds_nothing, nothing_stored) == (None, False)
    # The note is still there, but b never waited for that run: as one process, it retrieves.
    assert await store.nothing_found_at("ctx") is not None
    assert await b.run_once("ctx", finds_something, nothing_stored) == ("found now", False)


async def test_the_note_of_an_earlier_run_does_not_end_a_later_wait() -> None:
    wall = ManualClock(1000.0)
    store = InProcessContextStore(wall_clock=wall)
    b = replica(store, wall)
    await store.put_nothing_found("ctx", 999.0, LEASE_S)  # an earlier run found nothing
    assert await store.try_lock("ctx", "another replica", LEASE_S)  # a new run goes on
    stored = asyncio.Event()

    async def the_holders_entry() -> str | None:
        return "the holder's entry" if stored.is_set() else None

    waiting = asyncio.create_task(b.run_once("ctx", must_not_work, the_holders_entry))
    await wait_until(lambda: b.waiting == 1)
    stored.set()

    assert await waiting == ("the holder's entry", True)
