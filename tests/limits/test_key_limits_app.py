"""Per-key limits in the assembled service: one key past its limits gets 429 + Retry-After while
another streams normally, on ``/rag/stream`` and on the ``/v1`` facade; a disconnected stream
counts until its generation is cancelled; resumes are never refused; the refusals are metrics.

The upstream (``GatedUpstream``) holds the answers of questions marked ``HOLD`` open until the
test opens its gate, so "key A is at its limit" is a state waited for, not a moment slept to.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.conftest import Service
from tests.limits.conftest import (
    ANSWER,
    HOLD,
    ID_B,
    KEY_A,
    KEY_B,
    WAIT_LIMIT_S,
    GatedUpstream,
    auth,
    gated_live_service,
    gated_service,
    limits_settings,
)
from tests.streaming.helpers import assert_error_shape, deltas, post_stream
from tests.streaming.sse_spec import parse_sse, sse_events

STREAM_LIMIT = 3
WHOLE_ANSWER = "".join(ANSWER)


@pytest.fixture
async def gated(tmp_path: Path) -> AsyncIterator[tuple[Service, GatedUpstream]]:
    # The set-up: 50 streams for the process, a per-key limit below it.
    settings = limits_settings(tmp_path, {"streams": STREAM_LIMIT}, max_sessions=50)
    async with gated_service(settings) as running:
        yield running


async def ask(service: Service, key: str, query: str, context: str) -> httpx.Response:
    return await post_stream(service.client, {"query": query}, context=context, headers=auth(key))


def hold_streams(service: Service, key: str, count: int) -> list[asyncio.Task[httpx.Response]]:
    """``count`` streams of ``key`` whose answers wait at the upstream's gate."""
    return [
        asyncio.create_task(ask(service, key, f"tent price? {HOLD}", f"shop:held-{i}"))
        for i in range(count)
    ]


def answer_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    events = parse_sse(response.content).events
    assert events[-1].type == "done"
    return deltas(events)


def assert_streams_refusal(response: httpx.Response, limit: int) -> dict[str, Any]:
    error = assert_error_shape(response, 429)
    assert error["code"] == "rate_limited"
    assert error["retryable"] is True
    assert error["details"] == {"reason": "streams", "limit": limit}
    assert 1 <= int(response.headers["retry-after"]) <= 3
    return error


# The gated app, and key A's streams (as many as its limit allows) waiting at the gate.
KeyAtItsLimit = tuple[Service, GatedUpstream, list[asyncio.Task[httpx.Response]]]


@pytest.fixture
async def key_a_at_its_limit(gated: tuple[Service, GatedUpstream]) -> KeyAtItsLimit:
    """Key A with as many streams as its limit allows, their answers held at the gate."""
    service, upstream = gated
    held = hold_streams(service, KEY_A, STREAM_LIMIT)
    await upstream.wait_for(lambda: upstream.held == STREAM_LIMIT)
    return service, upstream, held


async def test_a_key_at_its_stream_limit_gets_429_while_another_key_streams(
    key_a_at_its_limit: KeyAtItsLimit,
) -> None:
    service, upstream, held = key_a_at_its_limit
    embeds_before = service.embedder.calls

    refused = await ask(service, KEY_A, "and the boots?", "shop:a-more")
    answered_b = await ask(service, KEY_B, "and the boots?", "shop:b-1")

    assert_streams_refusal(refused, STREAM_LIMIT)
    assert answer_of(answered_b) == WHOLE_ANSWER
    # Refused before any work: no retrieval for its (new) context, no upstream request.
    assert service.embedder.calls == embeds_before + 1  # B's retrieval only
    assert upstream.answer_calls == STREAM_LIMIT + 1
    upstream.gate.set()
    for response in await asyncio.gather(*held):
        assert answer_of(response) == WHOLE_ANSWER
    # The slots came back with the generations' ends.
    assert answer_of(await ask(service, KEY_A, "and the boots?", "shop:a-more")) == WHOLE_ANSWER


async def test_the_openai_facade_refuses_the_same_way(key_a_at_its_limit: KeyAtItsLimit) -> None:
    service, upstream, held = key_a_at_its_limit
    chat = {"model": "any", "messages": [{"role": "user", "content": "tent?"}]}

    for stream in (True, False):
        refused = await service.client.post(
            "/v1/chat/completions", json=chat | {"stream": stream}, headers=auth(KEY_A)
        )
        assert_streams_refusal(refused, STREAM_LIMIT)
    answered_b = await service.client.post("/v1/chat/completions", json=chat, headers=auth(KEY_B))
    assert answered_b.json()["choices"][0]["message"]["content"] == WHOLE_ANSWER
    assert upstream.answer_calls == STREAM_LIMIT + 1
    upstream.gate.set()
    await asyncio.gather(*held)


async def test_a_key_past_its_rate_gets_429_with_the_wait_for_its_next_token(
    tmp_path: Path,
) -> None:
    limits = {"requests_per_s": 0.01, "burst": 2}  # a token per 100 s: no refill in the test
    async with gated_service(limits_settings(tmp_path, limits)) as (service, upstream):
        for i in range(2):
            assert answer_of(await ask(service, KEY_A, "tent?", f"shop:{i}")) == WHOLE_ANSWER

        refused = await ask(service, KEY_A, "tent?", "shop:2")
        answered_b = await ask(service, KEY_B, "tent?", "shop:b")

        error = assert_error_shape(refused, 429)
        assert error["retryable"] is True
        assert error["details"] == {"reason": "rate", "limit": 0.01, "burst": 2}
        # ~100 s until A's next token, plus up to a second of jitter, in whole seconds.
        assert 90 <= int(refused.headers["retry-after"]) <= 101
        assert answer_of(answered_b) == WHOLE_ANSWER
        assert upstream.answer_calls == 3


async def test_the_refusals_are_counted_by_reason_in_the_metrics(tmp_path: Path) -> None:
    limits = {"streams": 1, "requests_per_s": 0.01, "burst": 2}
    async with gated_service(limits_settings(tmp_path, limits)) as (service, upstream):
        held = hold_streams(service, KEY_A, 1)
        await upstream.wait_for(lambda: upstream.held == 1)
        for i in range(2):
            assert (await ask(service, KEY_A, "tent?", f"shop:a{i}")).status_code == 429
        for i in range(3):
            await ask(service, KEY_B, "tent?", f"shop:b{i}")  # the third is past B's burst

        metrics = (await service.client.get("/metrics")).text

        assert 'rag_key_limit_rejections_total{reason="streams"} 2.0' in metrics
        assert 'rag_key_limit_rejections_total{reason="rate"} 1.0' in metrics
        assert "rag_key_limit_keys 2.0" in metrics
        assert "key-" not in metrics  # no key ids as labels
        upstream.gate.set()
        await asyncio.gather(*held)


async def test_an_override_gives_one_key_its_own_limit(tmp_path: Path) -> None:
    limits = {"streams": 1, "overrides": {ID_B: {"streams": 2}}}
    async with gated_service(limits_settings(tmp_path, limits)) as (service, upstream):
        held = hold_streams(service, KEY_A, 1) + hold_streams(service, KEY_B, 2)
        await upstream.wait_for(lambda: upstream.held == 3)

        assert_streams_refusal(await ask(service, KEY_A, "tent?", "shop:a"), 1)
        assert_streams_refusal(await ask(service, KEY_B, "tent?", "shop:b"), 2)
        upstream.gate.set()
        await asyncio.gather(*held)


async def test_without_client_keys_no_key_limit_applies(tmp_path: Path) -> None:
    settings = limits_settings(tmp_path, {"streams": 1, "requests_per_s": 0.01, "burst": 1})
    open_settings = settings.model_copy(update={"api_keys": []})
    async with gated_service(open_settings) as (service, upstream):
        held = [
            asyncio.create_task(
                post_stream(service.client, {"query": f"tent? {HOLD}"}, context=f"shop:{i}")
            )
            for i in range(4)
        ]
        await upstream.wait_for(lambda: upstream.held == 4)
        answered = await post_stream(service.client, {"query": "tent?"}, context="shop:x")

        assert answer_of(answered) == WHOLE_ANSWER
        upstream.gate.set()
        for response in await asyncio.gather(*held):
            assert answer_of(response) == WHOLE_ANSWER


# -- over a real connection: disconnects and resumes -------------------------------------------


async def open_and_read_meta(http: httpx.AsyncClient, key: str, query: str) -> str:
    """Start a stream, read up to its ``meta`` event, then drop the connection: its stream id."""
    request = {"query": query}
    async with http.stream(
        "POST", "/rag/stream", params={"context": "shop:gone"}, json=request, headers=auth(key)
    ) as response:
        assert response.status_code == 200
        async for event in sse_events(response):
            stream_id = event.json()["stream_id"]
            assert isinstance(stream_id, str)
            return stream_id
    raise AssertionError("the stream ended before its meta event")


async def wait_for_readers(service: Service, readers: int) -> None:
    registry = service.app.state.stream_deps.registry
    async with asyncio.timeout(WAIT_LIMIT_S):
        while registry.stats().readers != readers:  # noqa: ASYNC110 - no event for a detach
            await asyncio.sleep(0.01)


async def test_a_disconnected_stream_counts_until_its_generation_is_cancelled(
    tmp_path: Path,
) -> None:
    # The grace period is the window in which the refusal below must come; 2 s is far more
    # than the few ms it takes, and short enough to wait for its end.
    settings = limits_settings(tmp_path, {"streams": 1}, grace_period_s=2.0)
    async with gated_live_service(settings) as (service, upstream, http):
        await open_and_read_meta(http, KEY_A, f"tent? {HOLD}")
        await wait_for_readers(service, 0)  # the service saw the client leave

        refused = await http.post(
            "/rag/stream",
            params={"context": "shop:a"},
            json={"query": "tent?"},
            headers=auth(KEY_A),
        )

        assert_streams_refusal(refused, 1)
        assert upstream.held == 1  # still generating, for nobody
        await upstream.wait_for(lambda: upstream.cancelled == 1)  # the grace period ended
        again = await http.post(
            "/rag/stream",
            params={"context": "shop:a"},
            json={"query": "tent?"},
            headers=auth(KEY_A),
        )
        assert answer_of(again) == WHOLE_ANSWER


async def test_a_resume_is_never_refused_by_the_key_limits(tmp_path: Path) -> None:
    settings = limits_settings(tmp_path, {"streams": 1, "requests_per_s": 0.01, "burst": 1})
    async with gated_live_service(settings) as (service, upstream, http):
        stream_id = await open_and_read_meta(http, KEY_A, f"tent? {HOLD}")
        await wait_for_readers(service, 0)
        refused = await http.post(
            "/rag/stream", params={"context": "shop:a"}, json={"query": "x"}, headers=auth(KEY_A)
        )
        assert refused.status_code == 429  # A is at both its limits

        async with http.stream(
            "GET",
            f"/rag/stream/{stream_id}",
            headers=auth(KEY_A) | {"Last-Event-ID": f"{stream_id}:1"},
        ) as resumed:
            assert resumed.status_code == 200
            await wait_for_readers(service, 1)
            upstream.gate.set()
            body = await resumed.aread()

        events = parse_sse(body).events
        assert deltas(events) == WHOLE_ANSWER
        assert events[-1].type == "done"
