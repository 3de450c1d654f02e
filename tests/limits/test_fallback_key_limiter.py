"""Per-key limits while Redis is down: served on the process's own limits, counted, said
(``degraded``), and shared again once Redis answers, without asking it on every request."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from rag_service.adapters.redis_key_limiter import RedisKeyLimiter
from rag_service.errors import RateLimited
from rag_service.limits import FallbackKeyLimiter, InMemoryKeyLimiter
from rag_service.settings import KeyLimitSettings, RedisSettings
from tests.fakes.retrieval import ManualClock
from tests.limits.conftest import ID_A
from tests.redis_server import RedisServer

RETRY_INTERVAL_S = 5.0
LIMITS = KeyLimitSettings(streams=1, requests_per_s=1000.0, burst=1000)


@pytest.fixture
async def shared(own_redis: RedisServer) -> AsyncIterator[RedisKeyLimiter]:
    redis = RedisSettings(url=SecretStr(own_redis.url), key_prefix="fallback-test:")
    limiter = RedisKeyLimiter.from_settings(LIMITS, redis)
    yield limiter
    await limiter.aclose()


def slots_in_redis(server: RedisServer) -> int:
    with server.client() as client:
        return int(client.zcard(f"fallback-test:limits:{{{ID_A}}}:streams"))


async def test_redis_down_falls_back_to_local_limits_and_comes_back(
    own_redis: RedisServer, shared: RedisKeyLimiter, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    limiter = FallbackKeyLimiter(
        shared, InMemoryKeyLimiter(LIMITS), retry_interval_s=RETRY_INTERVAL_S, clock=clock
    )
    (await limiter.admit(ID_A)).release()
    assert not limiter.degraded
    own_redis.stop()

    local = await limiter.admit(ID_A)  # Redis fails: this process's own limits decide

    assert limiter.degraded
    assert limiter.stats().fallbacks == 1
    assert "fall back to this process's own state" in caplog.text
    with pytest.raises(RateLimited):
        await limiter.admit(ID_A)  # the local stream limit (1) holds meanwhile
    assert limiter.stats().fallbacks == 2
    assert limiter.stats().refused_streams == 1

    own_redis.start()
    local.release()
    await limiter.admit(ID_A)  # within the retry interval: still local, Redis not asked
    assert limiter.degraded
    assert slots_in_redis(own_redis) == 0

    clock.advance(RETRY_INTERVAL_S)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        await limiter.admit(ID_A)

    assert not limiter.degraded
    assert slots_in_redis(own_redis) == 1  # shared again
    assert "shared again" in caplog.text
    assert limiter.stats().fallbacks == 3


async def test_while_down_redis_is_asked_once_per_retry_interval(
    own_redis: RedisServer, shared: RedisKeyLimiter
) -> None:
    clock = ManualClock()
    limiter = FallbackKeyLimiter(
        shared,
        InMemoryKeyLimiter(KeyLimitSettings(streams=100)),
        retry_interval_s=RETRY_INTERVAL_S,
        clock=clock,
    )
    own_redis.stop()
    await limiter.admit(ID_A)
    own_redis.start()

    for _ in range(5):
        await limiter.admit(ID_A)
    assert slots_in_redis(own_redis) == 0
    clock.advance(RETRY_INTERVAL_S - 0.1)
    await limiter.admit(ID_A)
    assert slots_in_redis(own_redis) == 0
    clock.advance(0.1)
    await limiter.admit(ID_A)
    assert slots_in_redis(own_redis) == 1
    assert limiter.stats().fallbacks == 7
