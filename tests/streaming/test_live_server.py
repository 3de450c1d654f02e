"""Disconnects and resumes over real TCP: a uvicorn server on a free loopback port."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from rag_service.domain import TextDelta
from rag_service.streaming import StreamRegistry, StreamStats
from tests.fakes.upstream import Hold, ScriptedUpstream, answer_script, completed, full_text
from tests.streaming.helpers import assert_error_shape, deltas, read_deltas
from tests.streaming.sse_spec import ParsedStream, parse_sse

WAIT_LIMIT_S = 5.0
QUESTION = {"query": "Which boots are waterproof?"}


async def wait_until(condition: Callable[[], bool]) -> None:
    """Bounded wait for a state change made by another task (the server's)."""
    async with asyncio.timeout(WAIT_LIMIT_S):
        while not condition():  # noqa: ASYNC110 - the state lives in the server, no event to wait on
            await asyncio.sleep(0.01)


async def read_then_disconnect(
    http: httpx.AsyncClient, min_deltas: int, url: str = "/rag/stream"
) -> ParsedStream:
    """POST a question, read until ``min_deltas`` delta events arrived, then drop the connection."""
    async with http.stream("POST", url, params={"context": "c-1"}, json=QUESTION) as response:
        assert response.status_code == 200
        return await read_deltas(response, min_deltas)


def seqs(parsed: ParsedStream) -> list[int]:
    return [int(e.last_event_id.rpartition(":")[2]) for e in parsed.events]


@pytest.fixture
async def http(server_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server_url, timeout=WAIT_LIMIT_S) as client:
        yield client


async def test_disconnect_then_resume_delivers_the_answer_exactly_once(
    http: httpx.AsyncClient, upstream: ScriptedUpstream, registry: StreamRegistry
) -> None:
    upstream.script = answer_script([f"word{i} " for i in range(30)], pause_s=0.01)

    first = await read_then_disconnect(http, min_deltas=5)
    await wait_until(lambda: registry.stats().readers == 0)  # the server noticed the disconnect
    stream_id = first.events[0].json()["stream_id"]
    response = await http.get(
        f"/rag/stream/{stream_id}", headers={"Last-Event-ID": first.last_event_id}
    )
    second = parse_sse(response.content)

    assert deltas(first.events) + deltas(second.events) == full_text(upstream.script)
    assert seqs(first) + seqs(second) == list(range(1, len(first.events + second.events) + 1))
    assert second.events[-1].type == "done"
    assert upstream.answer_calls == 1  # resumed from the buffer, not regenerated
    assert upstream.closed_early == 0


@pytest.mark.parametrize("stream_overrides", [{"grace_period_s": 0.2}])
async def test_grace_period_expiry_cancels_the_upstream_and_forgets_the_stream(
    http: httpx.AsyncClient, upstream: ScriptedUpstream, registry: StreamRegistry
) -> None:
    upstream.script = [TextDelta("started"), Hold(), TextDelta(" never sent"), completed()]

    first = await read_then_disconnect(http, min_deltas=1)
    await asyncio.wait_for(upstream.closed_event.wait(), WAIT_LIMIT_S)
    stream_id = first.events[0].json()["stream_id"]
    response = await http.get(f"/rag/stream/{stream_id}")

    assert upstream.closed_early == 1
    assert registry.stats().sessions == 0
    assert assert_error_shape(response, 404)["code"] == "not_found"


async def test_resume_replays_then_follows_the_live_generation(
    http: httpx.AsyncClient, upstream: ScriptedUpstream, registry: StreamRegistry
) -> None:
    upstream.script = [TextDelta("Hello"), Hold(), TextDelta(", world"), completed()]

    first = await read_then_disconnect(http, min_deltas=1)
    await wait_until(lambda: registry.stats().readers == 0)
    stream_id = first.events[0].json()["stream_id"]
    resumed = asyncio.create_task(http.get(f"/rag/stream/{stream_id}"))
    await wait_until(lambda: registry.stats().readers == 1)
    upstream.release()
    replay = parse_sse((await resumed).content)

    assert [e.type for e in replay.events] == ["meta", "delta", "delta", "done"]
    assert deltas(replay.events) == "Hello, world"
    assert replay.events[:2] == first.events


async def test_two_readers_of_one_stream_see_the_same_events(
    http: httpx.AsyncClient, upstream: ScriptedUpstream, registry: StreamRegistry
) -> None:
    upstream.script = [TextDelta("one"), Hold(), TextDelta(" two"), completed()]
    received = b""
    async with http.stream("POST", "/rag/stream", params={"context": "c"}, json=QUESTION) as r:
        # One iterator for the whole response: abandoning a half-read `async for` would let its
        # finaliser close the connection, which is a disconnect as far as the server knows.
        chunks = r.aiter_raw()
        while not parse_sse(received).events:
            received += await anext(chunks)
        stream_id = parse_sse(received).events[0].json()["stream_id"]
        second_reader = asyncio.create_task(http.get(f"/rag/stream/{stream_id}"))
        await wait_until(lambda: registry.stats().readers == 2)
        upstream.release()
        async for chunk in chunks:
            received += chunk

    first = parse_sse(received)
    second = parse_sse((await second_reader).content)
    assert [e.type for e in first.events] == ["meta", "delta", "delta", "done"]
    assert second.events == first.events


async def test_a_client_that_stops_reading_gets_every_event_once_in_order(
    server_url: str, upstream: ScriptedUpstream, registry: StreamRegistry
) -> None:
    """~12 MB, more than the socket buffers hold, to a client that reads nothing until the
    answer has been generated whole: the response's writes wait for the client (uvicorn's flow
    control), the answer waits in the replay buffer meanwhile, and every event arrives once."""
    # Random hex, not one letter over and over: that would be a loop the service cuts short.
    noise = random.Random(5)
    pieces = [f"{i:04d}" + noise.randbytes(50_000).hex() for i in range(120)]
    upstream.script = answer_script(pieces)
    host, port = server_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = json.dumps(QUESTION).encode()
    writer.write(
        b"POST /rag/stream?context=c-1 HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(body), body)
    )
    await writer.drain()
    await wait_until(lambda: registry.stats() == StreamStats(sessions=1, generating=0, readers=1))
    raw = await asyncio.wait_for(reader.read(), WAIT_LIMIT_S * 4)
    writer.close()

    head, _, chunked = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    parsed = parse_sse(dechunk(chunked))
    assert deltas(parsed.events) == "".join(pieces)
    assert seqs(parsed) == list(range(1, len(pieces) + 3))  # meta, the deltas, done


def dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out)
