"""The freshness cache across replicas (issue #14): entries in Redis with their TTL, one
retrieval per stale context cluster-wide, a crashed lock holder blocks nobody past its lease,
and a Redis that is down leaves each replica its own cache."""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from rag_service.adapters.redis_connection import redis_client
from rag_service.adapters.redis_context_store import (
    RedisContextStore,
    decode_context,
    encode_context,
)
from rag_service.app import Components
from rag_service.domain import Passage, SharedContext
from rag_service.retrieval.shared_contexts import SharedEntries
from rag_service.settings import RedisSettings
from tests.app.conftest import ADMIN_KEY, ANSWER, wait_for_job
from tests.conftest import free_port
from tests.fakes.retrieval import HashingEmbedder
from tests.fakes.upstream import ScriptedUpstream, answer_script
from tests.fleet.replicas import (
    SharedSettings,
    ask_context,
    fleet_settings,
    ingest_initial_catalog,
    running_replicas,
    wait_until,
)
from tests.ingest.catalogs import product, write_products
from tests.redis_server import RedisServer

REQUESTS = 200
QUESTION = "How much is the tent?"


async def test_200_requests_for_one_stale_context_over_three_replicas_retrieve_once(
    shared_settings: SharedSettings,
) -> None:
    settings = shared_settings(
        limits={"streams": 1000, "requests_per_s": 10_000, "burst": 10_000},
        # Three replicas share this one event loop: its lag is not any replica's overload.
        stream={"shed_loop_lag_ms": 0},
    )
    embedder = HashingEmbedder(64)  # one for all replicas: it counts the cluster's embeddings
    ingest_initial_catalog(settings, embedder)
    parts = [
        Components(embedder=embedder, upstream=ScriptedUpstream(script=answer_script(ANSWER)))
        for _ in range(3)
    ]
    async with running_replicas([(settings, part) for part in parts]) as replicas:
        a = replicas[0]
        first = await ask_context(a, "shop:busy", QUESTION)
        assert (first["state"], first["catalog_version"]) == ("refreshed", 1)
        # Served from Redis on another replica: it never retrieved it.
        assert (await ask_context(replicas[2], "shop:busy", QUESTION))["state"] == "fresh"
        # A new catalog version makes the context stale everywhere.
        write_products(
            settings.ingest.catalog_dir / "products.jsonl", [product(i) for i in range(13)]
        )
        response = await a.client.post(
            "/admin/ingest", json={"path": "."}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )
        assert (await wait_for_job(a, response.json()["job_id"]))["status"] == "succeeded"  # type: ignore[arg-type]
        await wait_until(
            lambda: all(r.contexts.catalog_version == 2 for r in replicas), "all know version 2"
        )
        embedded = embedder.calls
        retrievals = sum(r.contexts.stats().retrievals for r in replicas)

        contexts = await asyncio.gather(
            *(ask_context(replicas[i % 3], "shop:busy", QUESTION) for i in range(REQUESTS))
        )

        assert embedder.calls - embedded == 1
        assert sum(r.contexts.stats().retrievals for r in replicas) - retrievals == 1
        assert {c["catalog_version"] for c in contexts} == {2}
        states = [c["state"] for c in contexts]
        assert set(states) <= {"refreshed", "fresh"}
        # Every replica had requests that joined the one retrieval instead of running their own.
        assert all(r.contexts.stats().coalesced > 0 for r in replicas)


@asynccontextmanager
async def shared_entries(
    redis_url: str, prefix: str, *, lock_s: float, retry_interval_s: float = 1
) -> AsyncIterator[tuple[RedisContextStore, SharedEntries]]:
    """A replica's shared entries (60 s TTL) over a Redis context store of its own."""
    redis = redis_client(RedisSettings.model_validate({"url": redis_url}))
    try:
        store = RedisContextStore(redis, key_prefix=prefix)
        entries = SharedEntries(store, ttl_s=60, lock_s=lock_s, retry_interval_s=retry_interval_s)
        yield store, entries
    finally:
        await redis.aclose()


OpenEntries = Callable[..., AbstractAsyncContextManager[tuple[RedisContextStore, SharedEntries]]]


@pytest.fixture
def session_entries(redis_server: RedisServer, redis_prefix: str) -> OpenEntries:
    """``shared_entries`` on the session's Redis under the test's prefix."""
    return functools.partial(shared_entries, redis_server.url, redis_prefix)


async def test_a_crashed_lock_holder_blocks_nobody_past_its_lease(
    session_entries: OpenEntries,
) -> None:
    async with session_entries(lock_s=0.5) as (store, entries):
        assert await store.try_lock("ctx", "a-replica-that-died", 0.5)
        started = time.monotonic()

        async def work() -> str:
            return "retrieved"

        async def nothing_stored() -> str | None:
            return None

        result = await entries.run_once("ctx", work, nothing_stored)

        assert result == ("retrieved", False)
        assert time.monotonic() - started >= 0.4  # it waited for the lease, no longer
        assert not entries.degraded


async def test_a_waiting_replica_takes_the_holders_entry(session_entries: OpenEntries) -> None:
    async with session_entries(lock_s=30) as (store, entries):
        assert await store.try_lock("ctx", "holder", 30)
        stored = asyncio.Event()

        async def work() -> str:
            raise AssertionError("the holder retrieves, not this replica")

        async def found() -> str | None:
            return "the holder's entry" if stored.is_set() else None

        waiting = asyncio.create_task(entries.run_once("ctx", work, found))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        stored.set()

        assert await waiting == ("the holder's entry", True)


async def test_while_redis_is_down_the_cache_is_local_and_comes_back(
    own_redis: RedisServer,
) -> None:
    context = SharedContext((), time.time(), 1, 5, (), "q")
    local = shared_entries(own_redis.url, "t:", lock_s=1, retry_interval_s=0.05)
    async with local as (_, entries):
        await entries.put("c", context, 60)
        assert await entries.get("c") == (True, context)
        own_redis.stop()

        assert await entries.get("c") == (False, None)  # use this process's own entry
        assert entries.degraded and entries.fallbacks >= 1

        async def work() -> str:
            return "alone"

        async def never() -> str | None:
            return None

        assert await entries.run_once("c", work, never) == ("alone", False)
        own_redis.start()  # empty: no persistence
        await wait_until(lambda: entries.active, "time to try Redis again")
        assert await entries.get("c") == (True, None)
        assert not entries.degraded


def test_an_entry_of_five_passages_with_384_dimension_vectors_is_about_16_kb() -> None:
    # The figure in docs/freshness.md: each vector is 2 kB (float32, base64), each text 1 kB.
    rng = random.Random(1)
    passages = tuple(
        Passage(
            id=f"SKU-0000{i}#0",
            doc_id=f"SKU-0000{i}",
            title="Tents model 1",
            text="x" * 1000,
            score=0.5,
            metadata={"source": "products.jsonl", "category": "tents"},
            vector=tuple(rng.gauss(0, 0.05) for _ in range(384)),
        )
        for i in range(5)
    )
    decoded = decode_context(encode_context(SharedContext(passages, 1.5, 3, 5, (), QUESTION)))
    assert decoded is not None and decoded.passages == passages
    # float32, the embedder's own precision
    assert decoded.passages[0].vector == pytest.approx(passages[0].vector, rel=1e-6)
    size = len(encode_context(SharedContext(passages, time.time(), 3, 5, (), QUESTION)))

    assert 15_000 < size < 17_000, size


async def test_a_replica_starting_while_redis_is_down_serves_on_its_own_cache(
    tmp_path: Path, chroma_server: tuple[str, int]
) -> None:
    nothing_listens = f"redis://127.0.0.1:{free_port()}/0"
    settings = fleet_settings(tmp_path, chroma_server, nothing_listens, "t:")
    embedder = HashingEmbedder(64)
    ingest_initial_catalog(settings, embedder)
    ingest_calls = embedder.calls
    upstream = ScriptedUpstream(script=answer_script(ANSWER))
    async with running_replicas([(settings, Components(embedder, upstream=upstream))]) as (a,):
        assert (await ask_context(a, "shop:c", QUESTION))["state"] == "refreshed"
        assert (await ask_context(a, "shop:c", QUESTION))["state"] == "fresh"

        entries = a.contexts.shared_entries
        assert entries is not None and entries.degraded and entries.fallbacks > 0
        assert a.contexts.catalog_channel.degraded
        assert embedder.calls - ingest_calls == 1  # one retrieval: the cache works locally
