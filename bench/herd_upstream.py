"""The herd benchmark's loopback upstream: fails every request for a while, then answers.

A bare asyncio protocol rather than a web framework, because in the benchmark it has to absorb
over a thousand requests per second on one core without becoming the bottleneck it is measuring.
It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies) for httpx:

- ``POST /v1/chat/completions``: 503 (OpenAI-style error JSON, no Retry-After) during the outage,
  else 200 with a short streamed answer (``ANSWER_TEXT`` in a few chunks, then ``[DONE]``).
- ``POST /_herd/outage?seconds=S``: the outage starts now and lasts S seconds; counters reset.
- ``GET /_herd/stats``: chat requests during/after the outage, per second since its start, and
  the peak number of open connections.

Times are ``time.monotonic()``, which on Linux is the same clock in every process, so the
benchmark can compare its clients' completion times with the outage end reported here.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

ANSWER_PIECES = ("Your order ", "left our warehouse ", "this morning.")
ANSWER_TEXT = "".join(ANSWER_PIECES)
LISTEN_BACKLOG = 4096  # 1,000 clients connect at the same instant; the default 100 drops SYNs


def _sse_answer() -> bytes:
    def chunk(delta: dict[str, str], finish: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        payload = {"id": "herd", "object": "chat.completion.chunk", "choices": [choice]}
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    pieces = [chunk({"role": "assistant"}, None)]
    pieces += [chunk({"content": text}, None) for text in ANSWER_PIECES]
    pieces += [chunk({}, "stop"), b"data: [DONE]\n\n"]
    return b"".join(pieces)


def _response(status: str, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\nconnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


ANSWER = _response("200 OK", "text/event-stream", _sse_answer())
OVERLOADED = _response(
    "503 Service Unavailable",
    "application/json",
    json.dumps({"error": {"message": "upstream overloaded", "type": "server_error"}}).encode(),
)
NOT_FOUND = _response("404 Not Found", "application/json", b'{"error": {"message": "no route"}}')


@dataclass
class HerdState:
    outage_start: float | None = None
    outage_end: float = 0.0
    outage_requests: int = 0
    after_requests: int = 0
    per_second: list[int] = field(default_factory=list)
    open_connections: int = 0
    peak_connections: int = 0

    def respond(self, method: str, target: str) -> bytes:
        url = urlsplit(target)
        if method == "POST" and url.path == "/v1/chat/completions":
            return self._chat()
        if method == "POST" and url.path == "/_herd/outage":
            seconds = float(parse_qs(url.query).get("seconds", ["0"])[0])
            return self._json(self._start_outage(seconds))
        if method == "GET" and url.path == "/_herd/stats":
            return self._json(self._stats())
        if method == "GET" and url.path == "/v1/models":
            return self._json({"object": "list", "data": [{"id": "herd", "object": "model"}]})
        return NOT_FOUND

    def _chat(self) -> bytes:
        now = time.monotonic()
        if self.outage_start is None:
            return ANSWER
        second = math.floor(now - self.outage_start)
        if second >= len(self.per_second):
            self.per_second.extend([0] * (second + 1 - len(self.per_second)))
        self.per_second[second] += 1
        if now < self.outage_end:
            self.outage_requests += 1
            return OVERLOADED
        self.after_requests += 1
        return ANSWER

    def _start_outage(self, seconds: float) -> dict[str, float]:
        self.outage_start = time.monotonic()
        self.outage_end = self.outage_start + seconds
        self.outage_requests = self.after_requests = 0
        self.per_second = []
        self.peak_connections = self.open_connections
        return {"start": self.outage_start, "end": self.outage_end}

    def _stats(self) -> dict[str, Any]:
        counters = ("outage_requests", "after_requests", "per_second", "peak_connections")
        return {name: getattr(self, name) for name in counters}

    @staticmethod
    def _json(payload: object) -> bytes:
        return _response("200 OK", "application/json", json.dumps(payload).encode())


class HerdConnection(asyncio.Protocol):
    """One client connection: parse pipelined requests, answer each from ``HerdState``."""

    def __init__(self, state: HerdState) -> None:
        self._state = state
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._state.open_connections += 1
        self._state.peak_connections = max(
            self._state.peak_connections, self._state.open_connections
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._state.open_connections -= 1

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (head_end := self._buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self._buffer[:head_end]).decode("latin-1")
            lines = head.split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            total = head_end + 4 + length
            if len(self._buffer) < total:
                return
            del self._buffer[:total]
            method, target = lines[0].split(" ")[:2]
            assert self._transport is not None
            self._transport.write(self._state.respond(method, target))


async def serve_forever(port: int = 0) -> None:
    """Listen on 127.0.0.1, print ``READY <port>`` for the parent, serve until killed."""
    state = HerdState()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HerdConnection(state), "127.0.0.1", port, backlog=LISTEN_BACKLOG
    )
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()
