"""Helpers shared by the streaming tests: requests, and reading their answers."""

from __future__ import annotations

import time
from typing import Any

import httpx

from rag_service.streaming.session import StreamSession
from rag_service.streaming.sse_format import NativeSseEncoder
from tests.streaming.sse_spec import ParsedStream, SseEvent, parse_sse


async def post_stream(
    client: httpx.AsyncClient,
    body: dict[str, Any] | None = None,
    *,
    context: str | None = "shop:user-1",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    params = {"context": context} if context is not None else {}
    return await client.post(
        "/rag/stream",
        params=params,
        json=body or {"query": "Are the boots waterproof?"},
        headers=headers,
    )


async def cors_preflight(
    client: httpx.AsyncClient, path: str, *, origin: str, method: str, headers: str
) -> httpx.Response:
    """A browser's CORS preflight from ``origin`` for ``method`` with request ``headers``."""
    return await client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


async def read_deltas(response: httpx.Response, count: int) -> ParsedStream:
    """A streamed response's events until ``count`` deltas came (the caller then drops it)."""
    received = b""
    async for chunk in response.aiter_raw():
        received += chunk
        if sum(e.type == "delta" for e in parse_sse(received).events) >= count:
            break
    return parse_sse(received)


def deltas(events: list[SseEvent]) -> str:
    return "".join(e.json()["text"] for e in events if e.type == "delta")


def stream_id_of(parsed: ParsedStream) -> str:
    meta = parsed.events[0]
    assert meta.type == "meta"
    stream_id = meta.json()["stream_id"]
    assert isinstance(stream_id, str)
    return stream_id


def assert_error_shape(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error["code"], str)
    assert error["code"]
    assert isinstance(error["message"], str)
    assert error["message"]
    return dict(error)


async def resume(
    client: httpx.AsyncClient,
    stream_id: str,
    last_event_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    all_headers = dict(headers or {})
    if last_event_id is not None:
        all_headers["Last-Event-ID"] = last_event_id
    return await client.get(f"/rag/stream/{stream_id}", headers=all_headers)


def hold_the_loop(seconds: float) -> None:
    """Block the running event loop on purpose, as more work than it keeps up with would."""
    time.sleep(seconds)


def native_bytes(session: StreamSession, after_seq: int = 0) -> bytes:
    """The session's events after ``after_seq`` as ``/rag/stream`` writes them."""
    events = session.read_events(after_seq, 1_000_000)
    return NativeSseEncoder(session.stream_id).encode(events)
