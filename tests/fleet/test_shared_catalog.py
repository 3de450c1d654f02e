"""The catalog version across replicas (issue #14): a publish on one replica, or by the CLI
ingest, is adopted by the others on its Redis announcement, not at their next background check;
the checks remain the safety net while Redis is down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from rag_service.adapters.redis_catalog_channel import RedisCatalogChannel
from rag_service.adapters.redis_connection import redis_client
from rag_service.app import Components
from rag_service.errors import StateStoreUnavailable
from rag_service.ingest_composition import ingest_catalog
from rag_service.settings import RedisSettings
from tests.app.conftest import ADMIN_KEY, ANSWER, wait_for_job
from tests.fakes.retrieval import HashingEmbedder
from tests.fakes.upstream import ScriptedUpstream, answer_script
from tests.fleet.replicas import (
    Replica,
    SharedSettings,
    ask_context,
    ingest_initial_catalog,
    running_replicas,
    wait_until,
)
from tests.ingest.catalogs import product, write_products
from tests.redis_server import RedisServer

NEVER_S = 3600.0  # a background check interval no test outlives: what changes came by message


def components(embedder: HashingEmbedder) -> Components:
    return Components(embedder=embedder, upstream=ScriptedUpstream(script=answer_script(ANSWER)))


@pytest.fixture
async def two_replicas(shared_settings: SharedSettings) -> AsyncIterator[list[Replica]]:
    settings = shared_settings(freshness={"catalog_check_interval_s": NEVER_S})
    embedder = HashingEmbedder(64)
    ingest_initial_catalog(settings, embedder)
    async with running_replicas(
        [(settings, components(embedder)), (settings, components(embedder))]
    ) as replicas:
        yield replicas


async def test_a_reingest_through_a_is_adopted_by_b_on_the_announcement(
    two_replicas: list[Replica],
) -> None:
    a, b = two_replicas
    first = await ask_context(b, "shop:c1", "How much is the tent?")
    assert (first["state"], first["catalog_version"]) == ("refreshed", 1)
    assert (await ask_context(b, "shop:c1", "How much is the tent?"))["state"] == "fresh"
    checks_before = b.contexts.stats().version_checks

    write_products(
        a.settings.ingest.catalog_dir / "products.jsonl", [product(i) for i in range(13)]
    )
    response = await a.client.post(
        "/admin/ingest",
        json={"path": "."},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert response.status_code == 202, response.text
    job = await wait_until_job(a, response.json()["job_id"])
    assert job["report"]["version_after"] == 2

    await wait_until(lambda: b.contexts.catalog_version == 2, "B adopts version 2")
    # B never asked the store: its background check is an hour away.
    assert b.contexts.stats().version_checks == checks_before
    assert b.contexts.catalog_channel.degraded is False
    after = await ask_context(b, "shop:c1", "How much is the tent?")
    assert (after["state"], after["catalog_version"]) == ("refreshed", 2)


async def wait_until_job(replica: Replica, job_id: str) -> dict[str, object]:
    job = await wait_for_job(replica, job_id)  # type: ignore[arg-type]  # a Service-like client
    assert job["status"] == "succeeded", job
    return job


async def test_a_cli_ingest_announces_its_version_to_the_replicas(
    two_replicas: list[Replica],
) -> None:
    a, b = two_replicas
    settings = a.settings
    write_products(settings.ingest.catalog_dir / "products.jsonl", [product(i) for i in range(14)])

    # `rag-service ingest` runs without an event loop: here in a worker thread.
    report = await asyncio.to_thread(
        ingest_catalog, settings, [settings.ingest.catalog_dir], embedder=HashingEmbedder(64)
    )

    assert report.published
    await wait_until(
        lambda: a.contexts.catalog_version == b.contexts.catalog_version == report.version_after,
        "both replicas adopt the CLI's version",
    )


async def test_the_channel_degrades_while_redis_is_down_and_resyncs_after(
    own_redis: RedisServer,
) -> None:
    settings = RedisSettings.model_validate(
        {"url": own_redis.url, "key_prefix": "t:", "retry_interval_s": 0.05}
    )
    listener_redis, sender_redis = redis_client(settings), redis_client(settings)
    listener = RedisCatalogChannel(listener_redis, key_prefix="t:", retry_interval_s=0.05)
    sender = RedisCatalogChannel(sender_redis, key_prefix="t:", retry_interval_s=0.05)
    heard: list[int] = []
    resyncs: list[None] = []
    try:
        await listener.start(heard.append, lambda: resyncs.append(None))
        await sender.announce(7)
        await wait_until(lambda: heard == [7], "the announcement is heard")

        own_redis.stop()
        await wait_until(lambda: listener.degraded, "the listener notices Redis is down")
        with pytest.raises(StateStoreUnavailable):
            await sender.announce(8)
        assert sender.fallbacks == 1

        own_redis.start()
        await wait_until(lambda: not listener.degraded, "the listener listens again")
        assert resyncs == [None]  # it asks the store: announcements may have been missed
        await sender.announce(9)
        await wait_until(lambda: heard == [7, 9], "announcements are heard again")
        assert listener.fallbacks >= 1
    finally:
        await listener.aclose()
        await listener_redis.aclose()
        await sender_redis.aclose()


async def test_an_announcement_never_moves_the_version_back(
    two_replicas: list[Replica], redis_server: RedisServer, redis_prefix: str
) -> None:
    _, b = two_replicas
    with redis_server.client() as redis:
        redis.publish(f"{redis_prefix}catalog:version", "5")
        await wait_until(lambda: b.contexts.catalog_version == 5, "B adopts 5")
        redis.publish(f"{redis_prefix}catalog:version", "3")
        redis.publish(f"{redis_prefix}catalog:version", "not a version")
        redis.publish(f"{redis_prefix}catalog:version", "6")
        await wait_until(lambda: b.contexts.catalog_version == 6, "B adopts 6")
