"""One contender of the client CPU benchmark, measured in a process of its own.

    python -m bench.client_cpu_child ours --base-url http://127.0.0.1:P/v1 --streams 300 --tokens 200

Contenders, each reading ``--streams`` concurrent streamed answers of ``--tokens`` tokens from the
bench upstream and collecting their text:

- ``ours``: ``OpenAICompatibleUpstream`` (its defaults, its pool sized for the streams), each
  answer through ``answer(request, sink)`` with a sink that keeps the text;
- ``aiohttp``: one ``aiohttp.ClientSession`` (``TCPConnector(limit=streams)``); each response
  read line by line to its end, ``json.loads`` of every ``data:`` chunk;
- ``httpx``: ``httpx.AsyncClient``s of at most ``HTTPX_POOL`` keep-alive connections each, the
  streams dealt out among them; the same with ``aiter_lines``. One pool for all streams is not
  used because httpcore (1.0.9) scans the whole pool once per idle connection whenever a request
  is assigned or released (n² checks: encode/httpcore#1035), which at 100 streams in one pool
  cost 1.4 ms of CPU per token, all of it at the starts and ends of the answers.

The bare clients parse SSE the way a typical hand-rolled client (or the ``openai`` SDK's line
reader) does, one ``data:`` line at a time, on purpose: they are the yardstick of what a naive
client costs, not a second SSE parser of this project, so they do not use
``rag_service.sse_parser`` (``ours`` does, inside the upstream client).

The bare clients send the body ours sends (``stream_options.include_usage``, so the answers end
alike). One unmeasured pass first (imports, connections, caches), then the measured pass: CPU
time of this whole process (``resource.getrusage``: user and system, all threads) from before
the streams start until the last one has ended. In each pass the streams start evenly spread
over ``--spread-ms``, as requests reach a service, not all in one loop iteration. Every answer must be the upstream's exact text.
Prints ``RESULT <json>``. Runs on uvloop, as the service does.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sys
import time
from typing import Any, Protocol, cast

import aiohttp
import httpx
import uvloop

from bench.answer_prose import answer_text
from bench.stream_children import raise_open_file_limit
from rag_service.domain import ChatMessage, ChatRequest, Failed, Role, TextDelta
from rag_service.errors import RagServiceError
from rag_service.ports import UpstreamEvent
from rag_service.settings import UpstreamSettings
from rag_service.upstream import OpenAICompatibleUpstream

CONTENDERS = ("ours", "aiohttp", "httpx")
HTTPX_POOL = 25  # connections per httpx client (see the module docstring)
READ_TIMEOUT_S = 60.0

Messages = list[dict[str, str]]


class Contender(Protocol):
    async def one(self, messages: Messages) -> tuple[str, int]:
        """The answer's text and the number of text pieces (tokens) it came in."""
        ...

    async def aclose(self) -> None: ...


def request_body(messages: Messages) -> dict[str, Any]:
    return {
        "model": "bench-token",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": messages,
    }


def add_chunk_text(data: bytes, parts: list[str]) -> None:
    """A ``data:`` payload's text pieces (none for ``[DONE]`` or a usage chunk) onto ``parts``."""
    if data == b"[DONE]":
        return
    for choice in json.loads(data)["choices"]:
        text = choice["delta"].get("content")
        if text:
            parts.append(text)


class Ours:
    def __init__(self, base_url: str, streams: int) -> None:
        settings = UpstreamSettings(base_url=base_url)
        if "max_connections" in UpstreamSettings.model_fields:  # a pool for every stream
            settings = settings.model_copy(update={"max_connections": streams})
        self._client = OpenAICompatibleUpstream(settings)

    async def one(self, messages: Messages) -> tuple[str, int]:
        parts: list[str] = []
        failures: list[Failed[RagServiceError]] = []

        def sink(item: UpstreamEvent) -> None:
            if isinstance(item, TextDelta):
                parts.append(item.text)
            elif isinstance(item, Failed):
                failures.append(item)

        request = ChatRequest(
            tuple(ChatMessage(cast(Role, m["role"]), m["content"]) for m in messages)
        )
        await self._client.answer(request, sink)
        if failures:
            raise RuntimeError(f"ours: the answer failed: {failures[0].error}")
        return "".join(parts), len(parts)

    async def aclose(self) -> None:
        await self._client.aclose()


class BareAiohttp:
    def __init__(self, base_url: str, streams: int) -> None:
        self._url = f"{base_url}/chat/completions"
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=streams),
            timeout=aiohttp.ClientTimeout(total=None, sock_read=READ_TIMEOUT_S),
        )

    async def one(self, messages: Messages) -> tuple[str, int]:
        parts: list[str] = []
        async with self._session.post(self._url, json=request_body(messages)) as response:
            response.raise_for_status()
            async for line in response.content:
                if line.startswith(b"data: "):
                    add_chunk_text(line[6:].rstrip(b"\r\n"), parts)
        return "".join(parts), len(parts)

    async def aclose(self) -> None:
        await self._session.close()


class BareHttpx:
    def __init__(self, base_url: str, streams: int) -> None:
        limits = httpx.Limits(max_connections=HTTPX_POOL, max_keepalive_connections=HTTPX_POOL)
        self._url = f"{base_url}/chat/completions"
        self._clients = [
            httpx.AsyncClient(limits=limits, timeout=READ_TIMEOUT_S, trust_env=False)
            for _ in range(-(-streams // HTTPX_POOL))
        ]
        self._next = 0

    async def one(self, messages: Messages) -> tuple[str, int]:
        client = self._clients[self._next % len(self._clients)]
        self._next += 1
        parts: list[str] = []
        async with client.stream("POST", self._url, json=request_body(messages)) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    add_chunk_text(line[6:].encode(), parts)
        return "".join(parts), len(parts)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


def make_contender(name: str, base_url: str, streams: int) -> Contender:
    kinds: dict[str, type[Ours] | type[BareAiohttp] | type[BareHttpx]] = {
        "ours": Ours,
        "aiohttp": BareAiohttp,
        "httpx": BareHttpx,
    }
    return kinds[name](base_url, streams)


async def one_pass(
    contender: Contender, questions: list[Messages], tokens: int, spread_s: float
) -> int:
    """All answers, their starts spread evenly over ``spread_s``; the tokens received. Raises
    unless every text is exact."""

    async def start_later(delay_s: float, messages: Messages) -> tuple[str, int]:
        await asyncio.sleep(delay_s)
        return await contender.one(messages)

    step = spread_s / len(questions)
    results = await asyncio.gather(
        *(start_later(i * step, messages) for i, messages in enumerate(questions))
    )
    for messages, (text, _) in zip(questions, results, strict=True):
        if text != answer_text(messages, tokens):
            raise RuntimeError(f"wrong answer {text[:80]!r}... to {messages[-1]['content']!r}")
    return sum(pieces for _, pieces in results)


async def measure(
    name: str, base_url: str, streams: int, tokens: int, spread_s: float
) -> dict[str, Any]:
    contender = make_contender(name, base_url, streams)
    questions = [[{"role": "user", "content": f"question {i}"}] for i in range(streams)]
    try:
        # Warm-up: imports, connections, caches.
        await one_pass(contender, questions, tokens, spread_s)
        gc.collect()
        before = resource.getrusage(resource.RUSAGE_SELF)
        began = time.perf_counter()
        received = await one_pass(contender, questions, tokens, spread_s)
        wall_s = time.perf_counter() - began
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        await contender.aclose()
    user_s, system_s = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return {
        "contender": name,
        "streams": streams,
        "tokens": received,
        "wall_s": round(wall_s, 3),
        "cpu_s": round(user_s + system_s, 4),
        "us_per_token": round((user_s + system_s) / received * 1e6, 2),
        "user_us_per_token": round(user_s / received * 1e6, 2),
        "system_us_per_token": round(system_s / received * 1e6, 2),
        "cores": round((user_s + system_s) / wall_s, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.client_cpu_child")
    parser.add_argument("contender", choices=CONTENDERS)
    parser.add_argument("--base-url", required=True, help="the upstream's .../v1")
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--tokens", type=int, required=True, help="tokens per answer")
    parser.add_argument("--spread-ms", type=float, default=0.0, help="over which streams start")
    args = parser.parse_args(argv)
    raise_open_file_limit()
    result = uvloop.run(
        measure(args.contender, args.base_url, args.streams, args.tokens, args.spread_ms / 1000)
    )
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
