"""The four paths of the TTFT benchmark: one request on a path, its first token timed, its answer
checked. The client is the same for all four (httpx, keep-alive, reading the raw body through
the project's SSE parser, ``rag_service.sse_parser``), so that what differs is only what stands
between it and the upstream:

- ``direct``: ``POST {upstream}/chat/completions`` (through the proxy when it is on), with a
  system prompt of about the service's prompt size;
- ``relay``: the same request to the minimal relay (``bench.minimal_relay``);
- ``rag``: ``POST /rag/stream?context=ttft-rag`` on the service;
- ``v1``: ``POST /v1/chat/completions`` on the service, ``X-Context-Id: ttft-v1``.

TTFT is from the request's start until the first event carrying answer text is parsed (an
OpenAI chunk with non-empty ``delta.content``; a native ``delta`` event). Each response is read to
its end, so its connection can be reused. Checks: ``direct`` and ``relay`` give exactly the
upstream's deterministic answer; each service path gives the same whole answer every time, ends
with ``done`` / ``[DONE]``, and after the first question of its contextId (``refreshed``) its
context is ``fresh``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.answer_prose import answer_text, is_whole_answer
from bench.repo_paths import SAMPLE_CATALOG
from bench.sse_load_client import QUERY
from rag_service.retrieval.prompt import INSTRUCTIONS
from rag_service.sse_parser import SSEEvent, SSEParser

PATHS = ("direct", "relay", "rag", "v1")
LABELS = {
    "direct": "(a) direct to the upstream",
    "relay": "(b) minimal FastAPI + httpx relay",
    "rag": "(c) service `POST /rag/stream`",
    "v1": "(d) service `POST /v1/chat/completions`",
}
SERVICE_PATHS = ("rag", "v1")
PROMPT_CONTEXT_CHARS = 5000  # the service's prompts carry up to 6,000 characters of context
MODEL = "bench-token"


@dataclass
class Sample:
    ttft_s: float
    meta_s: float | None = None  # service paths: until the context is known (meta / first chunk)
    server_ttft_ms: float | None = None  # /rag/stream's own figure (done.timings.ttft_ms)


@dataclass
class Parsed:
    """What one response said, parsed as it arrived."""

    parts: list[str] = field(default_factory=list)
    state: str | None = None  # the service's context state
    ended: bool = False  # `done` event / `data: [DONE]`
    first_text_at: float | None = None
    meta_at: float | None = None
    server_ttft_ms: float | None = None


def read_openai_event(event: SSEEvent, parsed: Parsed) -> None:
    if event.data == "[DONE]":
        parsed.ended = True
        return
    chunk = json.loads(event.data)
    if "error" in chunk:
        raise RuntimeError(f"stream error: {chunk['error']}")
    rag = chunk.get("rag")
    if isinstance(rag, dict):
        parsed.state = rag.get("state")
        parsed.meta_at = time.perf_counter()
    for choice in chunk.get("choices") or ():
        text = (choice.get("delta") or {}).get("content")
        if text:
            parsed.parts.append(text)
            parsed.first_text_at = parsed.first_text_at or time.perf_counter()


def read_native_event(event: SSEEvent, parsed: Parsed) -> None:
    if event.event == "message":
        return  # every native event is named
    payload = json.loads(event.data)
    if event.event == "delta":
        parsed.parts.append(payload["text"])
        parsed.first_text_at = parsed.first_text_at or time.perf_counter()
    elif event.event == "meta":
        parsed.state = payload["context"]["state"]
        parsed.meta_at = time.perf_counter()
    elif event.event == "done":
        parsed.ended = True
        parsed.server_ttft_ms = payload["timings"]["ttft_ms"]
    elif event.event == "error":
        raise RuntimeError(f"stream error: {payload}")


def upstream_request_body() -> dict[str, Any]:
    """A chat request shaped like the service's: instructions, a catalog context, the question."""
    context = (SAMPLE_CATALOG / "faq.md").read_text(encoding="utf-8")[:PROMPT_CONTEXT_CHARS]
    system = f"{INSTRUCTIONS}\n\n<context>\n{context}\n</context>"
    messages = [{"role": "system", "content": system}, {"role": "user", "content": QUERY}]
    return {"model": MODEL, "stream": True, "messages": messages}


class Paths:
    """One request on each path, with its answer checked (module docstring)."""

    def __init__(
        self,
        *,
        direct: httpx.AsyncClient,
        relay: httpx.AsyncClient,
        service: httpx.AsyncClient,
        words: int,
    ) -> None:
        self._clients = {"direct": direct, "relay": relay, "rag": service, "v1": service}
        self._words = words
        self._upstream_body = upstream_request_body()
        self._upstream_answer = answer_text(self._upstream_body["messages"], words)
        self._service_answers: dict[str, str] = {}
        self._asked: dict[str, int] = {}

    async def one(self, path: str) -> Sample:
        client = self._clients[path]
        parsed = Parsed()
        reader = read_native_event if path == "rag" else read_openai_event
        parser = SSEParser()
        started = time.perf_counter()
        async with self._open(client, path) as reply:
            if reply.status_code != 200:
                raise RuntimeError(f"{path}: HTTP {reply.status_code}: {await reply.aread()!r}")
            async for data in reply.aiter_raw():
                for event in parser.feed(data):
                    reader(event, parsed)
        self._check(path, parsed)
        assert parsed.first_text_at is not None
        meta_s = None if parsed.meta_at is None else parsed.meta_at - started
        return Sample(parsed.first_text_at - started, meta_s, parsed.server_ttft_ms)

    async def aclose(self) -> None:
        for client in set(self._clients.values()):
            await client.aclose()

    def _open(self, client: httpx.AsyncClient, path: str) -> Any:
        if path in ("direct", "relay"):
            return client.stream("POST", "/v1/chat/completions", json=self._upstream_body)
        if path == "rag":
            return client.stream(
                "POST", "/rag/stream", params={"context": "ttft-rag"}, json={"query": QUERY}
            )
        body = {
            "model": MODEL,
            "stream": True,
            "messages": [{"role": "user", "content": QUERY}],
        }
        headers = {"X-Context-Id": "ttft-v1"}
        return client.stream("POST", "/v1/chat/completions", json=body, headers=headers)

    def _check(self, path: str, parsed: Parsed) -> None:
        text = "".join(parsed.parts)
        if not parsed.ended or parsed.first_text_at is None:
            raise RuntimeError(f"{path}: the answer did not end properly: {text!r}")
        if path not in SERVICE_PATHS:
            if text != self._upstream_answer:
                raise RuntimeError(f"{path}: wrong answer {text!r}")
            return
        known = self._service_answers.setdefault(path, text)
        # The first question of a contextId is retrieved; after it, the context is fresh.
        expected = "fresh" if self._asked.get(path) else "refreshed"
        self._asked[path] = self._asked.get(path, 0) + 1
        if parsed.state != expected:
            raise RuntimeError(f"{path}: context state {parsed.state!r}, expected {expected!r}")
        if not is_whole_answer(text, self._words) or text != known:
            raise RuntimeError(f"{path}: wrong answer {text!r} (the first was {known!r})")
