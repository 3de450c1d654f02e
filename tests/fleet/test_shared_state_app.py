"""Fleet mode in the assembled app (in-process, a real ``redis-server``): per-key limits shared
by two apps on one Redis, and a Redis outage: new answers keep coming on local state, ``/readyz``
stays ready but reports the degradation, the metrics count the fallbacks, and everything is
shared again once Redis is back."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from rag_service.settings import RedisSettings, Settings
from tests.app.conftest import Service
from tests.limits.conftest import (
    HOLD,
    KEY_A,
    KEY_B,
    WAIT_LIMIT_S,
    GatedUpstream,
    auth,
    gated_service,
    limits_settings,
)
from tests.redis_server import RedisServer
from tests.streaming.helpers import assert_error_shape, post_stream

RETRY_INTERVAL_S = 0.2


def fleet_settings(tmp_path: Path, redis_url: str, prefix: str, **limits: Any) -> Settings:
    settings = limits_settings(tmp_path, limits)
    redis = RedisSettings(
        url=SecretStr(redis_url), key_prefix=prefix, retry_interval_s=RETRY_INTERVAL_S
    )
    return settings.model_copy(update={"redis": redis})


async def ask(service: Service, key: str, context: str, query: str = "tent?") -> httpx.Response:
    return await post_stream(service.client, {"query": query}, context=context, headers=auth(key))


async def shared_state(service: Service) -> dict[str, Any]:
    response = await service.client.get("/readyz")
    # Degraded shared state never makes the replica unready (the fake upstream is always up).
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ready"
    report: dict[str, Any] = response.json()["components"]["shared_state"]
    return report


def metric(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_start} not in the metrics:\n{text}")


async def test_without_redis_readyz_and_metrics_have_no_shared_state(tmp_path: Path) -> None:
    async with gated_service(limits_settings(tmp_path, {})) as (service, _):
        body = (await service.client.get("/readyz")).json()
        metrics = (await service.client.get("/metrics")).text

    assert "shared_state" not in body["components"]
    assert "rag_shared_state" not in metrics


async def test_one_keys_stream_limit_holds_across_two_apps_on_one_redis(
    tmp_path: Path, redis_server: RedisServer, redis_prefix: str
) -> None:
    async with AsyncExitStack() as stack:
        apps: list[tuple[Service, GatedUpstream]] = [
            await stack.enter_async_context(
                gated_service(
                    fleet_settings(tmp_path / name, redis_server.url, redis_prefix, streams=1)
                )
            )
            for name in ("a", "b")
        ]
        (service_a, upstream_a), (service_b, upstream_b) = apps
        held = asyncio.create_task(ask(service_a, KEY_A, "shop:held", f"tent? {HOLD}"))
        await upstream_a.wait_for(lambda: upstream_a.held == 1)

        refused = await ask(service_b, KEY_A, "shop:b")
        answered = await ask(service_b, KEY_B, "shop:b")

        error = assert_error_shape(refused, 429)
        assert error["details"] == {"reason": "streams", "limit": 1}
        assert answered.status_code == 200
        report = await shared_state(service_b)
        assert (report["ok"], report["redis"], report["degraded"]) == (True, "answers", [])
        assert report["fallbacks"]["key_limits"] == 0
        upstream_a.gate.set()
        assert (await held).status_code == 200
        assert upstream_b.answer_calls == 1


async def test_redis_down_serves_on_local_state_reports_it_and_recovers(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    settings = fleet_settings(tmp_path / "app", own_redis.url, "outage:", streams=5)
    async with gated_service(settings) as (service, _):
        assert (await ask(service, KEY_A, "shop:before")).status_code == 200
        assert (await shared_state(service))["ok"] is True

        own_redis.stop()
        during = [await ask(service, KEY_A, f"shop:during-{i}") for i in range(2)]
        report = await shared_state(service)
        metrics = (await service.client.get("/metrics")).text

        assert [response.status_code for response in during] == [200, 200]
        assert report["ok"] is False
        assert "key_limits" in report["degraded"]  # and others on Redis, each its own
        assert report["redis"].startswith("unavailable")
        assert "key_limits" in report["error"]
        assert report["fallbacks"]["key_limits"] == 2
        fallbacks = 'rag_shared_state_fallbacks_total{component="key_limits"}'
        assert metric(metrics, fallbacks) == 2.0
        assert metric(metrics, 'rag_shared_state_degraded{component="key_limits"}') == 1.0

        own_redis.start()
        # The limiter tries Redis again at its next admission after the retry interval.
        deadline = time.monotonic() + WAIT_LIMIT_S
        attempt = 0
        while "key_limits" in (await shared_state(service))["degraded"]:
            assert time.monotonic() < deadline, "still degraded after Redis came back"
            attempt += 1
            assert (await ask(service, KEY_A, f"shop:after-{attempt}")).status_code == 200
            await asyncio.sleep(RETRY_INTERVAL_S / 4)
        report = await shared_state(service)
        metrics = (await service.client.get("/metrics")).text

    assert report["redis"] == "answers"
    assert metric(metrics, 'rag_shared_state_degraded{component="key_limits"}') == 0.0
    with own_redis.client() as client:  # the admissions are in Redis again
        assert client.keys("outage:limits:*")
