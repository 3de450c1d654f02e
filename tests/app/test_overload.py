"""Load shedding in the assembled service: while its event loop is behind, new streams get 503.

The loop is held by sleeping inside it (the tests run in the service's loop), so it is
behind by at least that much when the request arrives; the lifespan's own ``LoopLagMonitor``
measures it. After the loop has run on time again, streams are accepted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rag_service.errors import ServiceUnavailable
from tests.app.conftest import Service, app_settings, client_auth, running_service
from tests.streaming.helpers import assert_error_shape, hold_the_loop
from tests.streaming.sse_spec import parse_sse

SHED_MS = 100.0
HOLD_S = 0.4  # well past SHED_MS, so the loop is behind whatever the machine's speed
QUESTION = {"query": "How much is the tent?"}


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    async with running_service(app_settings(tmp_path, shed_loop_lag_ms=SHED_MS)) as running:
        await caught_up(running)
        yield running


async def caught_up(service: Service, timeout_s: float = 30.0) -> None:
    """Wait until the service's lag monitor sees the loop on time again (its admission check
    passes): however busy the machine, not a fixed pause that may be too short."""
    registry = service.app.state.stream_deps.registry
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                registry.check_capacity()
                return
            except ServiceUnavailable:
                await asyncio.sleep(0.02)


async def post_stream(service: Service) -> tuple[int, bytes, dict[str, str]]:
    response = await service.client.post(
        "/rag/stream", params={"context": "shop:u1"}, json=QUESTION, headers=client_auth()
    )
    return response.status_code, response.content, dict(response.headers)


async def test_a_new_stream_is_refused_while_the_loop_is_behind_then_accepted(
    service: Service,
) -> None:
    hold_the_loop(HOLD_S)  # the service's loop is held, as by more work than it keeps up with
    refused = await service.client.post(
        "/rag/stream", params={"context": "shop:u1"}, json=QUESTION, headers=client_auth()
    )

    error = assert_error_shape(refused, 503)
    assert error["code"] == "unavailable"
    assert error["retryable"] is True
    assert error["details"]["reason"] == "overloaded"
    assert error["details"]["loop_lag_ms"] >= (HOLD_S * 1000) - 50
    assert 1 <= int(refused.headers["retry-after"]) <= 3
    assert service.upstream.answer_calls == 0  # refused before any upstream work

    await caught_up(service)
    status, body, _ = await post_stream(service)

    assert status == 200
    assert [e.type for e in parse_sse(body).events][-1] == "done"
    assert service.upstream.answer_calls == 1


async def test_a_resume_is_not_refused_while_the_loop_is_behind(service: Service) -> None:
    status, body, _ = await post_stream(service)
    assert status == 200
    stream_id = parse_sse(body).events[0].json()["stream_id"]

    hold_the_loop(HOLD_S)
    resumed = await service.client.get(f"/rag/stream/{stream_id}", headers=client_auth())

    assert resumed.status_code == 200
    assert parse_sse(resumed.content).events == parse_sse(body).events


async def test_the_openai_facade_sheds_too(service: Service) -> None:
    hold_the_loop(HOLD_S)
    refused = await service.client.post(
        "/v1/chat/completions",
        json={"model": "any", "stream": True, "messages": [{"role": "user", "content": "tent?"}]},
        headers=client_auth(),
    )

    assert refused.status_code == 503, refused.text
    assert 1 <= int(refused.headers["retry-after"]) <= 3


async def test_refusals_and_the_loop_lag_are_in_the_metrics(service: Service) -> None:
    before = await refusal_counts(service)  # waiting for the loop to catch up may have counted
    hold_the_loop(HOLD_S)
    status, _, _ = await post_stream(service)
    assert status == 503

    assert await refusal_counts(service) == {
        "overloaded": before["overloaded"] + 1,
        "too_many_streams": before["too_many_streams"],
    }
    await caught_up(service)  # the late firing has been observed by now
    metrics = (await service.client.get("/metrics")).text
    late = [line for line in metrics.splitlines() if "rag_event_loop_lag_seconds_bucket" in line]
    counts = {line.split('le="')[1].split('"')[0]: float(line.split()[-1]) for line in late}
    assert counts["+Inf"] - counts["0.25"] >= 1.0  # the firing the loop was held for


async def refusal_counts(service: Service) -> dict[str, float]:
    metrics = (await service.client.get("/metrics")).text
    prefix = 'rag_streams_refused_total{reason="'
    return {
        line[len(prefix) :].split('"')[0]: float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith(prefix)
    }
