"""The cluster-wide ingest lock (fleet mode): two replicas on different hosts (each with a lock
file of its own) sharing one real Redis and one real Chroma server run one admin ingest at a
time. A second ingest on the other replica, or ``rag-service ingest`` on a third host, is
refused with ``ingest_in_progress`` naming the holder while the first runs (its lease renewed
past its length), and runs after; a holder that died blocks at most its lease; only the holder
releases; a Redis that does not answer leaves the host's lock file alone, reported."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rag_service.adapters.redis_connection import redis_client
from rag_service.adapters.redis_ingest_lock import RedisIngestLock
from rag_service.app import Components
from rag_service.errors import IngestInProgress
from rag_service.settings import RedisSettings, Settings
from tests.app.conftest import ADMIN_KEY, ANSWER, wait_for_job
from tests.conftest import free_port, run_cli
from tests.fakes.retrieval import HashingEmbedder
from tests.fakes.upstream import ScriptedUpstream, answer_script
from tests.fleet.replicas import (
    Replica,
    fleet_settings,
    ingest_initial_catalog,
    running_replicas,
    wait_until,
)
from tests.ingest.catalogs import product, write_products
from tests.redis_server import RedisServer
from tests.streaming.helpers import assert_error_shape

LEASE_S = 1.0  # short, so that a test sees renewals and a dead holder's lease run out
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def host_settings(
    tmp_path: Path,
    host: str,
    chroma: tuple[str, int],
    redis_url: str,
    prefix: str,
    collection: str,
) -> Settings:
    """A replica on host ``host``: its own directory, catalog copy and lock file."""
    return fleet_settings(
        tmp_path / host,
        chroma,
        redis_url,
        prefix,
        collection=collection,
        ingest={"lock_lease_s": LEASE_S},
        redis={"retry_interval_s": 0.2},
    )


def replica_parts(count: int) -> list[Components]:
    return [
        Components(HashingEmbedder(64), upstream=ScriptedUpstream(script=answer_script(ANSWER)))
        for _ in range(count)
    ]


async def start_ingest(replica: Replica) -> Any:
    return await replica.client.post("/admin/ingest", json={"path": "."}, headers=ADMIN)


async def ingested(replica: Replica) -> dict[str, Any]:
    response = await start_ingest(replica)
    assert response.status_code == 202, response.text
    return await wait_for_job(replica, response.json()["job_id"])  # type: ignore[arg-type]


def embedder_of(parts: Components) -> HashingEmbedder:
    assert isinstance(parts.embedder, HashingEmbedder)
    return parts.embedder


@pytest.fixture
def collection() -> str:
    return f"ingest-lock-{uuid.uuid4().hex[:8]}"


HostSettings = Callable[[str], Settings]


@pytest.fixture
def on_host(
    tmp_path: Path,
    chroma_server: tuple[str, int],
    redis_server: RedisServer,
    redis_prefix: str,
    collection: str,
) -> HostSettings:
    """``host_settings`` of a host on the session's Chroma and Redis, under the test's prefix."""

    def settings(host: str) -> Settings:
        url = redis_server.url
        return host_settings(tmp_path, host, chroma_server, url, redis_prefix, collection)

    return settings


async def test_an_ingest_on_another_host_is_refused_while_one_runs_then_runs(
    tmp_path: Path,
    on_host: HostSettings,
    chroma_server: tuple[str, int],
    redis_server: RedisServer,
    redis_prefix: str,
    collection: str,
) -> None:
    settings = [on_host(h) for h in ("a", "b")]
    parts = replica_parts(2)
    ingest_initial_catalog(settings[0], embedder_of(parts[0]))
    # A's catalog has a product more, so that its ingest embeds (and waits at the gate).
    write_products(settings[0].ingest.catalog_dir / "more.jsonl", [product(100)])
    key = f"{redis_prefix}ingest-lock"
    async with running_replicas(list(zip(settings, parts, strict=True))) as (a, b):
        gate = embedder_of(parts[0]).gate
        gate.close()
        started = await start_ingest(a)
        assert started.status_code == 202, started.text
        await wait_until(lambda: gate.waiting >= 1, "A's ingest embeds")

        with redis_server.client() as redis:
            renewals = 0
            last = redis.pttl(key)

            def renewed_past_the_lease() -> bool:
                nonlocal renewals, last
                now = redis.pttl(key)
                renewals += now > last
                last = now
                return renewals > RENEWALS_PER_LEASE_PLUS_ONE

            await wait_until(renewed_past_the_lease, "A's lease renewed past its length")
            assert json.loads(redis.get(key))["holder"] == f"replica {a.app.state.replica_id}"

        refused = await start_ingest(b)
        cli = await asyncio.to_thread(
            run_cli,
            tmp_path,
            "ingest",
            str(settings[1].ingest.catalog_dir),
            RAG_CHROMA__HOST=chroma_server[0],
            RAG_CHROMA__PORT=str(chroma_server[1]),
            RAG_CHROMA__COLLECTION=collection,
            RAG_REDIS__URL=redis_server.url,
            RAG_REDIS__KEY_PREFIX=redis_prefix,
            RAG_INGEST__CATALOG_DIR=str(settings[1].ingest.catalog_dir),
            RAG_INGEST__LOCK_FILE=str(tmp_path / "c" / "ingest.lock"),  # a third host
        )
        gate.open()
        first = await wait_for_job(a, started.json()["job_id"])  # type: ignore[arg-type]
        after = await ingested(b)
        with redis_server.client() as redis:
            left = redis.get(key)

    error = assert_error_shape(refused, 409)
    assert error["code"] == "ingest_in_progress"
    assert f"another ingest is running (replica {a.app.state.replica_id})" in error["message"]
    assert cli.returncode == 2, cli.stdout + cli.stderr
    assert f"(replica {a.app.state.replica_id})" in cli.stdout
    assert first["status"] == "succeeded", first
    assert first["report"]["added"] == 1
    assert after["status"] == "succeeded", after
    assert left is None  # released by its holder


# A lease is renewed every third of its length: more renewals than that span more than a lease.
RENEWALS_PER_LEASE_PLUS_ONE = 4


async def test_a_dead_holder_blocks_ingests_at_most_its_lease(
    on_host: HostSettings, redis_server: RedisServer, redis_prefix: str
) -> None:
    settings = on_host("a")
    parts = replica_parts(1)
    ingest_initial_catalog(settings, embedder_of(parts[0]))
    key = f"{redis_prefix}ingest-lock"
    lease_ms = round(LEASE_S * 1000)
    dead = json.dumps({"token": "t", "holder": "replica dead-host-1-abc", "since": 0})
    async with running_replicas([(settings, parts[0])]) as (a,):
        with redis_server.client() as redis:
            redis.set(key, dead, px=lease_ms)  # then its holder died: nobody renews it
            refused = await start_ingest(a)
            remaining_ms = redis.pttl(key)
            await wait_until(lambda: redis.get(key) is None, "the dead holder's lease ran out")
        job = await ingested(a)

    error = assert_error_shape(refused, 409)
    assert "another ingest is running (replica dead-host-1-abc)" in error["message"]
    assert 0 < remaining_ms <= lease_ms  # never extended
    assert job["status"] == "succeeded", job


async def test_only_the_holder_releases_or_renews(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    from pydantic import SecretStr

    redis = redis_client(RedisSettings(url=SecretStr(redis_server.url)))
    try:
        first = RedisIngestLock(redis, key_prefix=redis_prefix, holder="first", lease_s=60)
        second = RedisIngestLock(redis, key_prefix=redis_prefix, holder="second", lease_s=60)
        lease = await first.acquire()
        with pytest.raises(IngestInProgress, match=r"another ingest is running \(first\)"):
            await second.acquire()
        # The first holder's lease ran out and the second took the lock meanwhile.
        await redis.delete(first.key)
        taken = await second.acquire()
        await lease.release()
        assert "second" in (await redis.get(first.key) or "")
        await taken.release()
        assert await redis.get(first.key) is None
    finally:
        await redis.aclose()


async def test_with_redis_down_the_ingest_runs_on_the_hosts_lock_and_says_so(
    tmp_path: Path, chroma_server: tuple[str, int], collection: str
) -> None:
    nothing_listens = f"redis://127.0.0.1:{free_port()}/0"
    settings = host_settings(tmp_path, "a", chroma_server, nothing_listens, "t:", collection)
    parts = replica_parts(1)
    ingest_initial_catalog(settings, embedder_of(parts[0]))
    write_products(settings.ingest.catalog_dir / "more.jsonl", [product(100)])
    async with running_replicas([(settings, parts[0])]) as (a,):
        gate = embedder_of(parts[0]).gate
        gate.close()
        started = await start_ingest(a)
        await wait_until(lambda: gate.waiting >= 1, "the ingest embeds")
        during = (await a.client.get("/readyz")).json()["components"]["shared_state"]
        gate.open()
        job = await wait_for_job(a, started.json()["job_id"])  # type: ignore[arg-type]
        after = (await a.client.get("/readyz")).json()["components"]["shared_state"]
        metrics = (await a.client.get("/metrics")).text

    assert started.status_code == 202, started.text
    assert job["status"] == "succeeded", job
    assert "ingest_lock" in during["degraded"]
    assert during["fallbacks"]["ingest_lock"] == 1
    assert "ingest_lock" not in after["degraded"]  # nothing runs unshared any more
    assert 'rag_shared_state_fallbacks_total{component="ingest_lock"} 1.0' in metrics
