"""The Redis adapter's own promises, beyond the shared contract: limits shared by replicas
(separate clients), atomic admission, Redis's time, stream-slot leases that a dead replica
cannot hold forever, and a clear domain error while Redis is gone.

A "replica" is a ``RedisKeyLimiter`` with a client of its own. Tests that stop Redis run a
server of their own; the others share the session's server, each under its own key prefix.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pydantic import SecretStr

from rag_service.adapters.redis_key_limiter import RedisKeyLimiter
from rag_service.errors import RateLimited, StateStoreUnavailable
from rag_service.ports import StreamSlot
from rag_service.settings import KeyLimitSettings, RedisSettings
from tests.fakes.retrieval import ManualClock
from tests.limits.conftest import ID_A, ID_B, WAIT_LIMIT_S
from tests.redis_server import RedisServer

LEASE_S = 30.0
SHORT_LEASE_S = 3.0  # the smallest allowed: renewed every second

Replicas = Callable[..., RedisKeyLimiter]


@pytest.fixture
async def replicas(redis_server: RedisServer, redis_prefix: str) -> AsyncIterator[Replicas]:
    """Makes replicas of one deployment (one key prefix): ``url`` (default: the session's
    server), ``lease_s``, ``clock`` (default: Redis's time), and the key limits."""
    opened: list[RedisKeyLimiter] = []

    def make(
        *,
        url: str | None = None,
        lease_s: float = LEASE_S,
        clock: ManualClock | None = None,
        **limits: Any,
    ) -> RedisKeyLimiter:
        redis = RedisSettings(
            url=SecretStr(url or redis_server.url), key_prefix=redis_prefix, slot_lease_s=lease_s
        )
        limiter = RedisKeyLimiter.from_settings(
            KeyLimitSettings.model_validate(limits), redis, clock=clock
        )
        opened.append(limiter)
        return limiter

    yield make
    for limiter in opened:
        await limiter.aclose()


async def refusal_reason(limiter: RedisKeyLimiter, key_id: str = ID_A) -> str:
    with pytest.raises(RateLimited) as refusal:
        await limiter.admit(key_id)
    reason: str = refusal.value.details["reason"]
    return reason


async def admitted(limiter: RedisKeyLimiter, key_id: str = ID_A) -> StreamSlot | None:
    try:
        return await limiter.admit(key_id)
    except RateLimited:
        return None


async def wait_until(condition: Callable[[], Awaitable[object]], what: str) -> None:
    """Poll ``condition`` until it holds, within a generous overall bound."""
    deadline = time.monotonic() + 4 * WAIT_LIMIT_S
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


# -- across replicas, on Redis's time -------------------------------------------------------------


async def test_two_replicas_share_a_keys_stream_limit(replicas: Replicas) -> None:
    a, b = replicas(streams=2), replicas(streams=2)

    on_a = await a.admit(ID_A)
    await b.admit(ID_A)

    assert await refusal_reason(a) == "streams"
    assert await refusal_reason(b) == "streams"
    await b.admit(ID_B)  # another key is not affected
    on_a.release()
    await wait_until(lambda: admitted(b), "B to see the slot A released")
    assert await refusal_reason(a) == "streams"


async def test_two_replicas_share_a_keys_token_bucket(replicas: Replicas) -> None:
    # A token every 1,000 s: nothing refills during the test.
    a, b = replicas(requests_per_s=0.001, burst=3), replicas(requests_per_s=0.001, burst=3)

    for slot in [await a.admit(ID_A), await b.admit(ID_A), await a.admit(ID_A)]:
        slot.release()

    assert await refusal_reason(b) == "rate"
    assert await refusal_reason(a) == "rate"


async def test_concurrent_admissions_on_two_replicas_never_exceed_the_limit(
    replicas: Replicas,
) -> None:
    a, b = replicas(streams=7), replicas(streams=7)

    results = await asyncio.gather(*(admitted(r) for _ in range(30) for r in (a, b)))

    assert sum(result is not None for result in results) == 7
    assert a.held_slots() + b.held_slots() == 7


async def test_the_bucket_refills_on_redis_time(replicas: Replicas) -> None:
    limiter = replicas(requests_per_s=0.5, burst=1)  # the refusal below comes within 2 s
    (await limiter.admit(ID_A)).release()
    assert await refusal_reason(limiter) == "rate"

    await wait_until(lambda: admitted(limiter), "a token, 2 s later")


# -- leases ---------------------------------------------------------------------------------------


async def test_a_dead_replicas_slot_is_reclaimed_one_lease_after_its_last_renewal(
    replicas: Replicas,
) -> None:
    clock = ManualClock()
    dying, survivor = (replicas(streams=1, clock=clock) for _ in range(2))
    await dying.admit(ID_A)
    clock.advance(10.0)
    await dying.renew_leases()  # its last renewal
    await dying.aclose()  # dies: no release, no renewal

    clock.advance(LEASE_S - 0.1)
    assert await refusal_reason(survivor) == "streams"
    clock.advance(0.2)

    await survivor.admit(ID_A)


async def test_a_renewed_slot_outlives_its_first_lease(replicas: Replicas) -> None:
    clock = ManualClock()
    holder, other = replicas(streams=1, clock=clock), replicas(streams=1, clock=clock)
    await holder.admit(ID_A)

    for _ in range(4):  # 80 s in all, well past the first lease
        clock.advance(20.0)
        await holder.renew_leases()
        assert await refusal_reason(other) == "streams"


async def test_the_holder_renews_in_the_background_and_a_dead_ones_lease_lapses(
    replicas: Replicas, redis_server: RedisServer, redis_prefix: str
) -> None:
    holder = replicas(streams=1, lease_s=SHORT_LEASE_S)
    survivor = replicas(streams=1, lease_s=SHORT_LEASE_S)
    await holder.admit(ID_A)
    streams_key = f"{redis_prefix}limits:{{{ID_A}}}:streams"
    with redis_server.client() as inspect:
        [(_, first_expiry)] = inspect.zrange(streams_key, 0, -1, withscores=True)

        async def renewed() -> bool:
            [(_, expiry)] = inspect.zrange(streams_key, 0, -1, withscores=True)
            return bool(expiry > first_expiry)

        await wait_until(renewed, "the background renewal (every lease_s / 3)")
    assert await refusal_reason(survivor) == "streams"

    await holder.aclose()  # dies holding the slot

    await wait_until(lambda: admitted(survivor), "the dead holder's lease to lapse")


async def test_a_redis_restarted_empty_relearns_the_running_streams(
    replicas: Replicas, own_redis: RedisServer
) -> None:
    holder = replicas(url=own_redis.url, streams=1)
    other = replicas(url=own_redis.url, streams=1)
    await holder.admit(ID_A)
    own_redis.stop()
    own_redis.start()  # no persistence: every slot is gone
    await other.admit(ID_B)  # connected to the new server, which knows nothing of A's

    await holder.renew_leases()

    assert await refusal_reason(other) == "streams"


# -- Redis down -----------------------------------------------------------------------------------


async def test_redis_stopped_mid_run_raises_a_clear_domain_error_and_recovers(
    replicas: Replicas, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_url = own_redis.url.replace("redis://", "redis://:not-a-real-password@")
    limiter = replicas(url=own_redis.url, streams=2)
    slot = await limiter.admit(ID_A)
    own_redis.stop()

    with pytest.raises(StateStoreUnavailable) as down:
        await limiter.admit(ID_A)
    slot.release()  # never raises; the lease lapses instead
    with pytest.raises(StateStoreUnavailable):
        await limiter.admit(ID_A)  # the release in flight has failed quietly
    with pytest.raises(StateStoreUnavailable):
        await replicas(url=secret_url).admit(ID_A)

    error = down.value
    assert (error.code, error.http_status, error.retryable) == (
        "state_store_unavailable",
        503,
        True,
    )
    assert "Redis" in error.message
    assert "not-a-real-password" not in caplog.text
    own_redis.start()
    await limiter.admit(ID_A)  # back, with the pool's new connections
