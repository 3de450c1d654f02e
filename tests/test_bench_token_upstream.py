"""The benches' token upstream, driven over loopback with httpx and raw sockets, and its answers
(bench/answer_prose.py) streamed through the service's repetition stop."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvloop

from bench import client_cpu, ttft
from bench.answer_prose import answer_pieces, answer_text, is_whole_answer
from bench.concurrency import (
    ADMISSION_ALLOWANCE_S,
    FULL_LEVELS,
    PLATEAU_S,
    QUICK_LEVELS,
    QUICK_PLATEAU_S,
    RAMP_RATE,
    LevelPlan,
)
from bench.token_upstream import TokenUpstream
from rag_service.domain import Completed, TextDelta, Timings
from rag_service.ports import UpstreamEvent
from rag_service.settings import AnswerSettings
from rag_service.streaming.repetition import RepeatedBlockDetector, RepetitionGuard
from tests.fixture_servers.fault_plan import AnswerStyle
from tests.fixture_servers.fault_plan import answer_pieces as fault_answer_pieces
from tests.streaming.sse_spec import sse_events

WORDS = 6
FIRST_TOKEN_S = 0.03
INTER_TOKEN_S = 0.01


@pytest.fixture
async def upstream() -> AsyncIterator[TokenUpstream]:
    async with TokenUpstream(
        words=WORDS, first_token_s=FIRST_TOKEN_S, inter_token_s=INTER_TOKEN_S
    ) as server:
        yield server


def chat_body(question: str) -> dict[str, Any]:
    return {"model": "m", "stream": True, "messages": [{"role": "user", "content": question}]}


async def stream_chunks(
    client: httpx.AsyncClient, url: str, body: dict[str, Any]
) -> tuple[list[dict[str, Any]], bool]:
    """The JSON chunks of one streamed answer, and whether it ended with ``[DONE]``."""
    chunks: list[dict[str, Any]] = []
    async with client.stream("POST", f"{url}/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        async for event in sse_events(response):
            if event.data == "[DONE]":
                return chunks, True
            chunks.append(event.json())
    return chunks, False


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(
        choice["delta"].get("content", "") for chunk in chunks for choice in chunk["choices"]
    )


async def test_streams_the_fault_upstreams_exact_answer_with_usage(
    upstream: TokenUpstream,
) -> None:
    body = chat_body("Which boots are waterproof?")
    body["stream_options"] = {"include_usage": True}
    async with httpx.AsyncClient() as client:
        chunks, done = await stream_chunks(client, upstream.base_url, body)

    expected = answer_text(body["messages"], WORDS)
    assert done
    assert text_of(chunks) == expected
    assert upstream.answer_text(body["messages"]) == expected
    assert len(expected.split(" ")) == WORDS
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == WORDS
    assert upstream.tokens_sent == WORDS


async def test_first_token_waits_for_the_configured_delay(upstream: TokenUpstream) -> None:
    async with httpx.AsyncClient() as client:
        began = time.monotonic()
        async with client.stream(
            "POST", f"{upstream.base_url}/chat/completions", json=chat_body("hi")
        ) as response:
            async for line in response.aiter_lines():
                if '"content": "' in line and '"content": ""' not in line:
                    break
        waited = time.monotonic() - began
    assert waited >= FIRST_TOKEN_S - 0.002


async def test_reuses_one_keep_alive_connection_for_consecutive_requests(
    upstream: TokenUpstream,
) -> None:
    async with httpx.AsyncClient() as client:
        first, _ = await stream_chunks(client, upstream.base_url, chat_body("one"))
        second, _ = await stream_chunks(client, upstream.base_url, chat_body("two"))

    assert text_of(first) == upstream.answer_text(chat_body("one")["messages"])
    assert text_of(second) == upstream.answer_text(chat_body("two")["messages"])
    assert upstream.chat_requests == 2
    assert upstream.max_open_connections == 1


async def test_concurrent_streams_each_get_their_own_answer(upstream: TokenUpstream) -> None:
    bodies = [chat_body(f"question {n}") for n in range(40)]
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(limits=limits) as client:
        results = await asyncio.gather(
            *(stream_chunks(client, upstream.base_url, body) for body in bodies)
        )

    assert [text_of(chunks) for chunks, _ in results] == [
        upstream.answer_text(body["messages"]) for body in bodies
    ]
    assert all(done for _, done in results)
    assert upstream.tokens_sent == len(bodies) * WORDS


async def test_continues_an_assistant_prefix_like_the_fault_upstream(
    upstream: TokenUpstream,
) -> None:
    body = chat_body("Where is my order?")
    whole = upstream.answer_text(body["messages"])
    prefix = whole[: len(whole) // 2]
    body["messages"].append({"role": "assistant", "content": prefix, "prefix": True})
    async with httpx.AsyncClient() as client:
        chunks, _ = await stream_chunks(client, upstream.base_url, body)

    assert prefix + text_of(chunks) == whole


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"not json", 400),
        (json.dumps({"stream": True}).encode(), 400),
        (json.dumps({**chat_body("x"), "stream": False}).encode(), 400),
    ],
)
async def test_rejects_bad_chat_bodies_with_400(
    upstream: TokenUpstream, content: bytes, status: int
) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{upstream.base_url}/chat/completions", content=content)
        # The connection stays usable after an error answer.
        models = await client.get(f"{upstream.base_url}/models")

    assert response.status_code == status
    assert response.json()["error"]["code"] == status
    assert models.status_code == 200
    assert upstream.chat_requests == 0
    assert upstream.max_open_connections == 1


async def test_unknown_route_is_404(upstream: TokenUpstream) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{upstream.base_url}/completions", json={})
    assert response.status_code == 404


async def exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    received = await asyncio.wait_for(reader.read(-1), 5.0)
    writer.close()
    await writer.wait_closed()
    return received


async def test_malformed_http_gets_400_and_a_closed_connection(upstream: TokenUpstream) -> None:
    received = await exchange(upstream.port, b"THIS IS NOT HTTP\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 400 Bad Request\r\n")


async def test_connection_close_request_gets_a_whole_chunked_body_then_eof(
    upstream: TokenUpstream,
) -> None:
    body = json.dumps(chat_body("bye")).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    received = await exchange(upstream.port, request)

    head, _, chunked = received.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head and b"Connection: close" in head
    assert chunked.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
    assert upstream.open_connections == 0


def test_serves_on_uvloop_as_in_the_benchmark() -> None:
    """The benchmark child runs on uvloop, whose transports are not asyncio's classes."""

    async def two_answers() -> tuple[list[str], list[str], int]:
        async with (
            TokenUpstream(
                words=WORDS, first_token_s=FIRST_TOKEN_S, inter_token_s=INTER_TOKEN_S
            ) as server,
            httpx.AsyncClient() as client,
        ):
            bodies = [chat_body("first"), chat_body("second")]
            texts = [text_of((await stream_chunks(client, server.base_url, b))[0]) for b in bodies]
            expected = [server.answer_text(b["messages"]) for b in bodies]
            return texts, expected, server.max_open_connections

    texts, expected, connections = uvloop.run(two_answers())
    assert texts == expected
    assert connections == 1


class RecordingReads(asyncio.Protocol):
    """A raw client that keeps every read as it came from the socket."""

    def __init__(self) -> None:
        self.reads: list[bytes] = []
        self.received = bytearray()
        self.arrived = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.reads.append(data)
        self.received += data
        self.arrived.set()

    async def until(self, ending: bytes) -> None:
        while not self.received.endswith(ending):
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 5.0)


def chat_request(question: str) -> bytes:
    body = json.dumps(chat_body(question)).encode()
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


async def test_the_chunked_terminator_comes_in_a_read_after_done(upstream: TokenUpstream) -> None:
    """As over TLS: a client that stops at [DONE] has not read the body's end yet."""
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(RecordingReads, "127.0.0.1", upstream.port)
    try:
        transport.write(chat_request("one"))  # type: ignore[attr-defined]
        await client.until(b"0\r\n\r\n")
        done_read = next(i for i, read in enumerate(client.reads) if b"data: [DONE]" in read)
        terminator_read = len(client.reads) - 1
        # Keep-alive: the same connection answers again, and ends the same way.
        client.received.clear()
        transport.write(chat_request("two"))  # type: ignore[attr-defined]
        await client.until(b"data: [DONE]\n\n\r\n0\r\n\r\n")
    finally:
        transport.close()

    assert client.reads[done_read].endswith(b"data: [DONE]\n\n\r\n")
    assert terminator_read > done_read
    assert client.reads[terminator_read] == b"0\r\n\r\n"
    assert upstream.chat_requests == 2
    assert upstream.accepted_connections == 1


async def test_counts_every_accepted_connection(upstream: TokenUpstream) -> None:
    limits = httpx.Limits(max_keepalive_connections=0)  # a new connection per request
    async with httpx.AsyncClient(limits=limits) as client:
        for question in ("a", "b", "c"):
            await stream_chunks(client, upstream.base_url, chat_body(question))

    assert upstream.accepted_connections == 3
    assert upstream.chat_requests == 3


# -- the answers against the service's repetition stop ----------------------------------------

MIN_CHARS = AnswerSettings().repetition_min_chars  # the service's default


def bench_answer_lengths() -> list[int]:
    """The token counts the benches ask the token upstream for, and a margin above them."""
    levels = [LevelPlan(n, RAMP_RATE, PLATEAU_S, ADMISSION_ALLOWANCE_S) for n in FULL_LEVELS]
    levels += [LevelPlan(n, RAMP_RATE, QUICK_PLATEAU_S) for n in QUICK_LEVELS]
    lengths = {ttft.WORDS, client_cpu.FULL["tokens"], client_cpu.QUICK["tokens"]}
    lengths |= {plan.words for plan in levels}
    return sorted(lengths | {500})


def questions(count: int) -> list[list[dict[str, Any]]]:
    return [[{"role": "user", "content": f"question {n}"}] for n in range(count)]


def held_deltas(pieces: list[str]) -> int:
    """How many deltas the service's detector did not pass on the moment they came."""
    detector = RepeatedBlockDetector(MIN_CHARS)
    held = sum(detector.feed(piece)[-1:] != [piece] for piece in pieces)
    assert not detector.repeated
    return held + len(detector.flush())


@pytest.mark.parametrize("words", bench_answer_lengths())
def test_no_delta_of_an_answer_is_held_by_the_repetition_stop(words: int) -> None:
    held = {n: held_deltas(answer_pieces(m, words)) for n, m in enumerate(questions(60))}

    assert held == dict.fromkeys(held, 0)


def test_the_fault_upstreams_words_were_held_which_is_what_changed() -> None:
    """The check above can fail: the old 18-word text had a fifth of its deltas held (enough
    for a p99 one token interval late)."""
    style = AnswerStyle(words=130)
    held = [held_deltas(fault_answer_pieces(m, style)) for m in questions(5)]

    assert min(held) > 13  # over a tenth


def test_the_guard_forwards_every_delta_at_once_and_ends_normally() -> None:
    """Through ``RepetitionGuard`` as the service runs it: nothing waits, nothing is stopped."""
    received: list[UpstreamEvent] = []
    stops: list[bool] = []
    guard = RepetitionGuard(
        received.append, min_chars=MIN_CHARS, stop_upstream=lambda: stops.append(True), clock=float
    )
    pieces = answer_pieces([{"role": "user", "content": "Can I return worn boots?"}], 200)

    for count, piece in enumerate(pieces, start=1):
        guard(TextDelta(piece))
        assert len(received) == count, f"delta {count} ({piece!r}) was held"
    end = Completed(finish_reason="stop", usage=None, timings=Timings(None, 1.0), attempts=1)
    guard(end)

    assert [item.text for item in received[:-1] if isinstance(item, TextDelta)] == pieces
    assert received[-1] == end
    assert not stops and not guard.stopped


def test_an_answer_reads_like_prose_from_a_few_hundred_words() -> None:
    answers = [answer_text(m, 130) for m in questions(20)]
    tokens = [token for answer in answers for token in answer.split(" ")]
    vocabulary = {token.rstrip(".,").lower() for token in tokens}

    assert len(vocabulary) >= 300
    for answer in answers:
        words = answer.split(" ")
        assert words[0][0].isupper()
        assert sum(word.endswith(".") for word in words) >= 8  # sentences, not a word list
        after_full_stop = [b for a, b in itertools.pairwise(words) if a.endswith(".")]
        assert all(word[0].isupper() for word in after_full_stop)
        trigrams = list(zip(words, words[1:], words[2:], strict=False))
        assert len(set(trigrams)) == len(trigrams)  # no three words twice


def test_an_answer_is_deterministic_per_question_and_exactly_as_long_as_asked() -> None:
    first, second = questions(2)

    pieces = answer_pieces(first, 40)

    assert pieces == answer_pieces([dict(m) for m in first], 40)
    assert pieces != answer_pieces(second, 40)
    assert len(pieces) == 40
    assert not pieces[0].startswith(" ")
    assert all(p.startswith(" ") and " " not in p[1:] and p[1:] for p in pieces[1:])
    assert answer_pieces(first, 120)[:40] != [] and answer_pieces(first, 0) == []
    assert answer_pieces(first, 1) == [pieces[0]]


def test_is_whole_answer_knows_the_answers_words_and_their_number() -> None:
    text = answer_text(questions(1)[0], 50)

    assert is_whole_answer(text, 50)
    assert not is_whole_answer(text, 49)
    assert not is_whole_answer(text.replace(" ", " zebra ", 1), 51)
    assert not is_whole_answer(" ".join(fault_answer_pieces(questions(1)[0], AnswerStyle(50))), 50)
