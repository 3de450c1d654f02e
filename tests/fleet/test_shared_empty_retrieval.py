"""A retrieval that finds nothing, across replicas (two in-process replicas on one real
``redis-server`` and one ``chroma run``): the replica waiting for another's retrieval of the
same question ends with the same state as soon as that retrieval ends, without retrieving
itself (no lease waited out, no second retrieval)."""

from __future__ import annotations

import asyncio

from rag_service.app import Components
from rag_service.domain import ContextState
from tests.app.conftest import ANSWER
from tests.fakes.retrieval import HashingEmbedder
from tests.fakes.upstream import ScriptedUpstream, answer_script
from tests.fleet.replicas import (
    SharedSettings,
    ingest_initial_catalog,
    running_replicas,
    wait_until,
)

QUESTION = "Is there a waterproof tent?"
NOTHING_MATCHES = {"category": "no-such-category"}  # a filter no passage passes


async def test_the_waiter_of_a_retrieval_that_found_nothing_gets_its_state_without_retrieving(
    shared_settings: SharedSettings,
) -> None:
    settings = shared_settings(
        # Far longer than the test: a waiter that waited the lease out would hang it.
        freshness={"retrieval_lock_s": 120.0},
    )
    embedders = [HashingEmbedder(64), HashingEmbedder(64)]  # one per replica: counts its own
    ingest_initial_catalog(settings, embedders[0])
    parts = [
        Components(embedder, upstream=ScriptedUpstream(script=answer_script(ANSWER)))
        for embedder in embedders
    ]
    async with running_replicas([(settings, p) for p in parts]) as (a, b):
        shared_b = b.contexts.shared_entries
        assert shared_b is not None
        b_embeddings = embedders[1].calls
        embedders[0].gate.close()  # A's retrieval waits in its embedding of the question
        on_a = asyncio.create_task(
            a.contexts.resolve("shop:empty", QUESTION, filters=NOTHING_MATCHES)
        )
        await wait_until(lambda: embedders[0].gate.waiting == 1, "A retrieves")
        on_b = asyncio.create_task(
            b.contexts.resolve("shop:empty", QUESTION, filters=NOTHING_MATCHES)
        )
        await wait_until(lambda: shared_b.waiting == 1, "B waits for A's retrieval")
        embedders[0].gate.open()
        from_a, from_b = await on_a, await on_b

    assert from_a.state is ContextState.fallback
    assert (from_b.state, from_b.passages, from_b.fallback_text) == (
        from_a.state,
        from_a.passages,
        from_a.fallback_text,
    )
    assert from_b.catalog_version == from_a.catalog_version
    assert (a.contexts.stats().retrievals, b.contexts.stats().retrievals) == (1, 0)
    assert b.contexts.stats().coalesced == 1
    assert embedders[1].calls == b_embeddings  # B embedded nothing: it did not retrieve
