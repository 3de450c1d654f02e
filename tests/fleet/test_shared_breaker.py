"""The upstream circuit breaker across replicas (issue #14): the circuit that A's failures open
parks B's requests before B sends anything upstream; in half-open one replica probes for all;
while Redis is down each replica's breaker works alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rag_service.adapters.redis_breaker_board import RedisBreakerBoard
from rag_service.adapters.redis_connection import redis_client
from rag_service.app import Components
from rag_service.domain import BreakerNews, BreakerState
from rag_service.settings import BreakerSettings, RedisSettings, Settings
from rag_service.upstream.breaker import CircuitBreaker, Permit
from rag_service.upstream.breaker_sharing import BreakerSharing, upstream_key
from tests.fakes.retrieval import HashingEmbedder
from tests.fixture_servers.fault_upstream import Complete, FaultUpstream, Status
from tests.fleet.replicas import (
    Replica,
    SharedSettings,
    client_auth,
    ingest_initial_catalog,
    running_replicas,
    wait_until,
)
from tests.redis_server import RedisServer
from tests.streaming.sse_spec import parse_sse

REPLICA_HEADER = "X-Replica"


def breaker_of(replica: Replica) -> CircuitBreaker:
    breaker: CircuitBreaker = replica.app.state.stream_deps.upstream.breaker
    return breaker


def requests_from(upstream: FaultUpstream, name: str) -> int:
    return sum(
        1
        for request in upstream.requests
        if request.path.endswith("/chat/completions")
        and {k.lower(): v for k, v in request.headers.items()}.get(REPLICA_HEADER.lower()) == name
    )


async def ask(replica: Replica, context: str) -> tuple[int, list[dict[str, Any]]]:
    """The status and the JSON of the events (or of the error body)."""
    response = await replica.client.post(
        "/rag/stream",
        params={"context": context},
        json={"query": "How much is the tent?"},
        headers=client_auth(),
    )
    if response.status_code != 200:
        return response.status_code, [response.json()]
    return 200, [event.json() for event in parse_sse(response.content).events]


def error_codes(events: list[dict[str, Any]]) -> list[str]:
    """The error codes of SSE ``error`` events and of an error response's body."""
    errors = [event.get("error", event) for event in events]
    return [error["code"] for error in errors if "code" in error]


@pytest.fixture
async def failing_upstream() -> AsyncIterator[FaultUpstream]:
    async with FaultUpstream(default=Status(503)) as upstream:
        yield upstream


def replica_settings(
    base: Settings, name: str, upstream: FaultUpstream, breaker: dict[str, Any]
) -> Settings:
    data = base.model_dump()
    data["upstream"] |= {
        "base_url": upstream.base_url,
        "extra_headers": {REPLICA_HEADER: name},
        "retry": data["upstream"]["retry"] | {"max_attempts": 1},
        "breaker": data["upstream"]["breaker"] | breaker,
    }
    return Settings.model_validate(data)


@pytest.fixture
def base_settings(shared_settings: SharedSettings) -> Settings:
    settings = shared_settings()
    ingest_initial_catalog(settings, HashingEmbedder(64))
    return settings


def two_replicas(
    base: Settings, upstream: FaultUpstream, **breaker: Any
) -> Any:  # an async context manager of [A, B]
    embedder = HashingEmbedder(64)
    return running_replicas(
        [
            (replica_settings(base, name, upstream, breaker), Components(embedder=embedder))
            for name in ("A", "B")
        ]
    )


async def test_the_circuit_a_opened_parks_b_before_b_sends_anything(
    base_settings: Settings, failing_upstream: FaultUpstream
) -> None:
    async with two_replicas(
        base_settings, failing_upstream, failure_threshold=2, open_s=30, max_open_s=30
    ) as (a, b):
        for turn in range(2):
            status, events = await ask(a, f"shop:a{turn}")
            assert status == 200 and error_codes(events), events  # the upstream failed
        assert breaker_of(a).state is BreakerState.open
        await wait_until(lambda: breaker_of(b).state is BreakerState.open, "B adopts open")

        status, body = await ask(b, "shop:b1")

        assert status == 503
        assert body[0]["error"]["code"] == "upstream_circuit_open"
        assert requests_from(failing_upstream, "A") == 2
        assert requests_from(failing_upstream, "B") == 0
        # The open period is A's: B reopens when A does, not 30 s after it heard.
        assert abs(breaker_of(b).open_remaining_s() - breaker_of(a).open_remaining_s()) < 5


async def test_in_half_open_one_replica_probes_for_all(
    base_settings: Settings, failing_upstream: FaultUpstream
) -> None:
    async with two_replicas(
        base_settings, failing_upstream, failure_threshold=1, open_s=0.5, max_open_s=0.5
    ) as (a, b):
        await ask(a, "shop:a0")
        await wait_until(lambda: breaker_of(b).state is BreakerState.open, "B adopts open")
        await wait_until(
            lambda: breaker_of(a).state is breaker_of(b).state is BreakerState.half_open,
            "both half-open",
        )
        # The probe takes a while (and fails): the other replica asks meanwhile.
        failing_upstream.set_plan([Status(503, delay_s=3.0)], default=Complete())
        probing = asyncio.create_task(ask(a, "shop:a1"))
        await wait_until(lambda: requests_from(failing_upstream, "A") == 2, "A's probe is out")

        _, from_b = await ask(b, "shop:b1")
        _, from_a = await probing

        # A probed (its failed probe costs it no attempt: it parked, probed again, and was
        # answered); B, half-open too, did not send its own probe: it was refused at once.
        assert error_codes(from_b) == ["upstream_circuit_open"]
        assert error_codes(from_a) == []
        assert requests_from(failing_upstream, "B") == 0
        # A's successful probe closed the circuit on B too.
        await wait_until(lambda: breaker_of(b).state is BreakerState.closed, "B adopts closed")
        _, again = await ask(b, "shop:b2")
        assert error_codes(again) == []
        assert requests_from(failing_upstream, "B") == 1


async def test_while_redis_is_down_each_breaker_works_alone(own_redis: RedisServer) -> None:
    settings = RedisSettings.model_validate({"url": own_redis.url})
    redis = redis_client(settings)
    breaker = CircuitBreaker(BreakerSettings(failure_threshold=1, open_s=30))
    sharing = BreakerSharing(
        breaker,
        RedisBreakerBoard(redis, key_prefix="t:"),
        base_url="http://upstream/v1",
        replica_id="A",
        probe_lock_s=5,
        sync_interval_s=0.05,
        retry_interval_s=0.05,
    )
    try:
        await sharing.start()
        own_redis.stop()
        await wait_until(lambda: sharing.degraded, "sharing notices Redis is down")

        breaker.record_failure(breaker.try_acquire())  # opens, locally
        assert breaker.state is BreakerState.open
        await wait_until(lambda: sharing.fallbacks >= 2, "the post is counted as a fallback")
        assert await sharing.claim_probe(Permit.probe)  # no claim possible: probe alone

        own_redis.start()
        await wait_until(lambda: not sharing.degraded, "shared again")
    finally:
        await sharing.aclose()
        await redis.aclose()


async def test_a_replica_starting_adopts_an_open_circuit_from_the_key(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    redis = redis_client(RedisSettings.model_validate({"url": redis_server.url}))
    board = RedisBreakerBoard(redis, key_prefix=redis_prefix)
    key = upstream_key("http://upstream/v1")
    breaker = CircuitBreaker(BreakerSettings(open_s=1))
    sharing = BreakerSharing(
        breaker,
        board,
        base_url="http://upstream/v1",
        replica_id="late",
        probe_lock_s=5,
        sync_interval_s=3600,
        retry_interval_s=1,
    )
    try:
        await board.post(
            BreakerNews(key, BreakerState.open, origin="early", remaining_s=20, open_for_s=20)
        )
        assert await board.claim_probe(key, "early", 5) is True
        assert await board.claim_probe(key, "other", 5) is False  # the probe is claimed
        assert await board.claim_probe(key, "early", 5) is True  # its holder may probe again

        await sharing.start()

        assert breaker.state is BreakerState.open
        assert 10 < breaker.open_remaining_s() <= 20
        await board.post(BreakerNews(key, BreakerState.closed, origin="early"))
        await wait_until(lambda: breaker.state is BreakerState.closed, "the close is adopted")
        assert await board.read(key) is None
        assert await board.claim_probe(key, "other", 5) is True  # a verdict ends the claim
    finally:
        await sharing.aclose()
        await redis.aclose()
