"""``DELETE /rag/stream/{stream_id}`` in the assembled service: a client stops its answer.

The open stream ends with an ``error`` event (``cancelled``), the upstream request is closed, the
key's stream slot is free again, the stream stays resumable with that end, and ``/metrics``
counts it. Over a real connection (uvicorn on loopback), so the stream is read while it runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.app.conftest import Service
from tests.limits.conftest import (
    HOLD,
    KEY_A,
    KEY_B,
    GatedUpstream,
    auth,
    gated_live_service,
    limits_settings,
)
from tests.streaming.helpers import assert_error_shape
from tests.streaming.sse_spec import SseEvent, parse_sse, sse_events

CANCELLED = {
    "code": "cancelled",
    "message": "the answer was cancelled by its client",
    "retryable": False,
}


async def until_first_event(chunks: AsyncIterator[bytes]) -> bytes:
    """The stream's bytes read up to (at least) its first whole event."""
    received = b""
    async for chunk in chunks:
        received += chunk
        if parse_sse(received).events:
            break
    return received


@pytest.fixture
async def running(
    tmp_path: Path,
) -> AsyncIterator[tuple[Service, GatedUpstream, httpx.AsyncClient]]:
    # One stream per key: a slot not given back by the cancel would refuse the next question.
    settings = limits_settings(tmp_path, {"streams": 1}, grace_period_s=60.0)
    async with gated_live_service(settings) as running:
        yield running


async def test_cancel_ends_the_running_answer_for_its_reader_and_frees_the_key(
    running: tuple[Service, GatedUpstream, httpx.AsyncClient],
) -> None:
    service, upstream, http = running
    request = http.build_request(
        "POST",
        "/rag/stream",
        params={"context": "shop:stop"},
        json={"query": f"tent price? {HOLD}"},
        headers=auth(KEY_A),
    )
    response = await http.send(request, stream=True)
    try:
        assert response.status_code == 200
        chunks = response.aiter_raw()
        received = await until_first_event(chunks)
        stream_id = parse_sse(received).events[0].json()["stream_id"]
        await upstream.wait_for(lambda: upstream.held == 1)

        cancel = await http.delete(f"/rag/stream/{stream_id}", headers=auth(KEY_A))

        assert cancel.status_code == 200
        assert cancel.headers["content-type"] == "application/json"
        assert cancel.json() == {"stream_id": stream_id, "cancelled": True}
        async for chunk in chunks:  # the open stream ends, with the cancel's event
            received += chunk
    finally:
        await response.aclose()
    events = parse_sse(received).events
    assert [e.type for e in events] == ["meta", "error"]
    assert events[-1].json() == CANCELLED
    await upstream.wait_for(lambda: upstream.cancelled == 1)  # the upstream request was closed

    # Resumable with its end, as a client that lost its connection would find it.
    assert await replay(http, stream_id) == events
    again = await http.delete(f"/rag/stream/{stream_id}", headers=auth(KEY_A))
    assert again.json() == {"stream_id": stream_id, "cancelled": False}

    # The key's one stream slot is free again.
    answer = await http.post(
        "/rag/stream", params={"context": "shop:next"}, json={"query": "tent?"}, headers=auth(KEY_A)
    )
    assert answer.status_code == 200
    assert parse_sse(answer.content).events[-1].type == "done"

    metrics = (await http.get("/metrics")).text
    assert "rag_streams_cancelled_total 1.0" in metrics.splitlines()
    assert "rag_streams_retained 2.0" in metrics.splitlines()  # the cancelled and the answered
    stats = service.app.state.stream_deps.registry.stats()
    assert (stats.cancelled, stats.generating) == (1, 0)


async def test_a_v1_chat_stream_is_cancelled_by_its_native_id(
    running: tuple[Service, GatedUpstream, httpx.AsyncClient],
) -> None:
    _, upstream, http = running
    question = {"stream": True, "messages": [{"role": "user", "content": f"tent? {HOLD}"}]}
    request = http.build_request("POST", "/v1/chat/completions", json=question, headers=auth(KEY_A))
    response = await http.send(request, stream=True)
    try:
        assert response.status_code == 200
        chunks = response.aiter_raw()
        received = await until_first_event(chunks)
        first = parse_sse(received).events[0].json()
        stream_id = first["rag"]["stream_id"]
        assert first["id"] == f"chatcmpl-{stream_id}"
        await upstream.wait_for(lambda: upstream.held == 1)

        cancel = await http.delete(f"/rag/stream/{stream_id}", headers=auth(KEY_A))

        assert cancel.json() == {"stream_id": stream_id, "cancelled": True}
        async for chunk in chunks:
            received += chunk
    finally:
        await response.aclose()
    events = parse_sse(received).events
    assert events[-1].json() == {"error": CANCELLED}  # an OpenAI-style error, and no [DONE]
    assert all(event.data != "[DONE]" for event in events)
    await upstream.wait_for(lambda: upstream.cancelled == 1)


async def test_a_finished_stream_is_not_cancelled(
    running: tuple[Service, GatedUpstream, httpx.AsyncClient],
) -> None:
    _, _, http = running
    answer = await http.post(
        "/rag/stream", params={"context": "shop:a"}, json={"query": "tent?"}, headers=auth(KEY_A)
    )
    events = parse_sse(answer.content).events
    stream_id = events[0].json()["stream_id"]

    cancel = await http.delete(f"/rag/stream/{stream_id}", headers=auth(KEY_A))

    assert cancel.status_code == 200
    assert cancel.json() == {"stream_id": stream_id, "cancelled": False}
    assert await replay(http, stream_id) == events
    assert events[-1].type == "done"


async def test_only_the_streams_own_key_may_cancel_it(
    running: tuple[Service, GatedUpstream, httpx.AsyncClient],
) -> None:
    _, upstream, http = running
    task_response = await http.send(
        http.build_request(
            "POST",
            "/rag/stream",
            params={"context": "shop:a"},
            json={"query": f"tent? {HOLD}"},
            headers=auth(KEY_A),
        ),
        stream=True,
    )
    try:
        stream_id = (await anext(sse_events(task_response))).json()["stream_id"]
        await upstream.wait_for(lambda: upstream.held == 1)
        path = f"/rag/stream/{stream_id}"

        assert assert_error_shape(await http.delete(path, headers=auth(KEY_B)), 403)["code"] == (
            "forbidden"
        )
        refused = await http.delete(path)
        assert assert_error_shape(refused, 401)["code"] == "unauthorized"
        assert refused.headers["www-authenticate"] == "Bearer"
        assert upstream.held == 1  # still running
        for unknown in ("AAAAAAAAAAAAAAAAAAAAAA", "not-a-stream-id"):
            missing = await http.delete(f"/rag/stream/{unknown}", headers=auth(KEY_A))
            assert assert_error_shape(missing, 404)["code"] == "not_found"
        wrong_method = await http.patch(path, headers=auth(KEY_A))
        assert assert_error_shape(wrong_method, 405)["code"] == "method_not_allowed"
        assert set(wrong_method.headers["allow"].replace(" ", "").split(",")) == {"GET", "DELETE"}
    finally:
        upstream.gate.set()
        await task_response.aclose()


async def replay(http: httpx.AsyncClient, stream_id: str) -> list[SseEvent]:
    response = await http.get(f"/rag/stream/{stream_id}", headers=auth(KEY_A))
    assert response.status_code == 200, response.text
    return parse_sse(response.content).events
