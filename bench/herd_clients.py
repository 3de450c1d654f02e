"""The reconnect strategies the herd benchmark compares; each fills one outcome per stream.

(a) ``ours``: OpenAICompatibleUpstream with its default settings, one instance shared by all
streams (as in the service: one process, one retry budget, one circuit breaker).
(b) ``article``: the seed article's loop, min(30 s, 1 s * 2^n) * (1 + 0.3 * random), 10 retries.
(c) ``fixed``: a retry every second, no limit.

(b) and (c) model independent browser clients: each stream has its own keep-alive connection and
a minimal HTTP/1.1 exchange. A shared httpx pool would distort them: httpcore's pool scans all its
connections for every request it assigns or releases, so 1,000 pooled connections make the
client CPU-bound (encode/httpcore#1035).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from rag_service.domain import ChatMessage, ChatRequest, Completed, Failed, TextDelta
from rag_service.settings import UpstreamSettings
from rag_service.sse_parser import SSEParser
from rag_service.upstream import OpenAICompatibleUpstream

QUESTION = "Where is my order?"
REQUEST = ChatRequest(messages=(ChatMessage("user", QUESTION),))
REQUEST_BODY = {
    "model": "herd",
    "stream": True,
    "messages": [{"role": "user", "content": QUESTION}],
}


@dataclass
class StreamOutcome:
    completed_at: float | None = None  # time.monotonic(); None: never completed
    text: str = ""
    attempts: int = 0


Runner = Callable[[str, list[StreamOutcome], random.Random], Awaitable[None]]


# -- (a) our client ---------------------------------------------------------------------------


async def ours(base_url: str, outcomes: list[StreamOutcome], rng: random.Random) -> None:
    settings = UpstreamSettings(base_url=base_url, max_connections=max(1000, len(outcomes)))
    await _ours_streams(OpenAICompatibleUpstream(settings, rng=rng), outcomes)


async def _ours_streams(upstream: OpenAICompatibleUpstream, outcomes: list[StreamOutcome]) -> None:
    try:
        await asyncio.gather(*(_ours_stream(upstream, outcome) for outcome in outcomes))
    finally:
        await upstream.aclose()


async def _ours_stream(upstream: OpenAICompatibleUpstream, outcome: StreamOutcome) -> None:
    async for item in upstream.stream(REQUEST):
        if isinstance(item, TextDelta):
            outcome.text += item.text
        elif isinstance(item, Completed):
            outcome.completed_at, outcome.attempts = time.monotonic(), item.attempts
        elif isinstance(item, Failed):
            outcome.attempts = item.attempts


# -- (b) and (c): plain retry loops, one connection per stream ---------------------------------

DelayFn = Callable[[int, random.Random], float]
_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def article_delay(retry: int, rng: random.Random) -> float:
    """The seed article: min(maxDelay, baseDelay * 2^attempt) * (1 + random * jitterFactor)."""
    return min(30.0, 1.0 * 2.0**retry) * (1 + rng.random() * 0.3)


def fixed_delay(retry: int, rng: random.Random) -> float:
    return 1.0


def naive_runner(delay: DelayFn, max_retries: int | None) -> Runner:
    async def run(base_url: str, outcomes: list[StreamOutcome], rng: random.Random) -> None:
        port = httpx.URL(base_url).port
        assert port is not None
        body = json.dumps(REQUEST_BODY).encode()
        request = (
            f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
            f"content-type: application/json\r\naccept: text/event-stream\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode() + body
        streams = (_naive_stream(port, request, o, rng, delay, max_retries) for o in outcomes)
        await asyncio.gather(*streams)

    return run


async def _naive_stream(
    port: int,
    request: bytes,
    outcome: StreamOutcome,
    rng: random.Random,
    delay: DelayFn,
    max_retries: int | None,
) -> None:
    connection: _Connection | None = None
    try:
        retries = itertools.count() if max_retries is None else range(max_retries + 1)
        for retry in retries:
            if retry:
                await asyncio.sleep(delay(retry - 1, rng))
            outcome.attempts += 1
            text, connection = await _naive_attempt(port, request, connection)
            if text is not None:
                outcome.text, outcome.completed_at = text, time.monotonic()
                return
    finally:
        if connection is not None:
            connection[1].close()


async def _naive_attempt(
    port: int, request: bytes, connection: _Connection | None
) -> tuple[str | None, _Connection | None]:
    """One request; the answer's text (None: failed, any status or error) and the connection."""
    try:
        if connection is None:
            connection = await asyncio.open_connection("127.0.0.1", port)
        reader, writer = connection
        writer.write(request)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
        body = await reader.readexactly(length)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, IndexError):
        if connection is not None:
            connection[1].close()
        return None, None
    if not head.startswith("http/1.1 200"):
        return None, connection
    return sse_text(body), connection


def sse_text(body: bytes) -> str:
    """The concatenated ``delta.content`` of an OpenAI chat completion SSE body (read with the
    project's SSE parser: what a browser client's EventSource would make of it)."""
    pieces = []
    for event in SSEParser().feed(body):
        if event.data != "[DONE]":
            pieces.append(json.loads(event.data)["choices"][0]["delta"].get("content") or "")
    return "".join(pieces)


RUNNERS: dict[str, Runner] = {
    "ours": ours,
    "article": naive_runner(article_delay, max_retries=10),
    "fixed": naive_runner(fixed_delay, max_retries=None),
}
