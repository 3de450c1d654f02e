"""The benchmark's load client: it retries a stream the service refused (503 + Retry-After),
and reads the OpenAI shape of ``/v1/chat/completions`` as well as ``/rag/stream``'s.

A small loopback server refuses the first request with 503 and answers the second with a
chunked SSE stream, as the service does when it sheds load and when it has recovered.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from bench.load_report import StreamRecord, build_report
from bench.sse_load_client import follow_stream
from bench.sse_stream import SseStreamProtocol, request_bytes

REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 0\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
)


def chunked_response(events: list[bytes]) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    return head + b"Connection: close\r\n\r\n" + body


def openai_answer(words: list[str]) -> bytes:
    """The /v1 facade's shape: ids of the native events, finishing chunks sharing the last id."""

    def chunk(seq: int, payload: dict[str, object]) -> bytes:
        return b"id: s:%d\ndata: %s\n\n" % (seq, json.dumps(payload).encode())

    first = {
        "choices": [{"delta": {"role": "assistant", "content": ""}}],
        "rag": {"state": "fresh"},
    }
    events = [chunk(1, first), b": ping\n"]
    for seq, word in enumerate(words, start=2):
        events.append(chunk(seq, {"choices": [{"delta": {"content": word}}]}))
    end = len(words) + 2
    events.append(chunk(end, {"choices": [{"delta": {}, "finish_reason": "stop"}]}))
    events.append(b"id: s:%d\ndata: [DONE]\n\n" % end)
    return chunked_response(events)


def sse_answer(words: list[str]) -> bytes:
    events = [b'retry: 1000\n\nid: s:1\nevent: meta\ndata: {"context": {"state": "fresh"}}\n\n']
    for seq, word in enumerate(words, start=2):
        data = json.dumps({"text": word}).encode()
        events.append(b"id: s:%d\nevent: delta\ndata: %s\n\n" % (seq, data))
    events.append(b"id: s:%d\nevent: done\ndata: {}\n\n" % (len(words) + 2))
    return chunked_response(events)


class RefusingOnce:
    """Refuses the first request (503), answers the next ones with ``answer``."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.requests = 0
        self.heads: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.heads.append(await reader.readuntil(b"\r\n\r\n"))
        self.requests += 1
        writer.write(REFUSAL if self.requests == 1 else self.answer)
        await writer.drain()
        writer.close()


@pytest.fixture
async def server() -> AsyncIterator[tuple[RefusingOnce, int]]:
    refusing = RefusingOnce(sse_answer(["Hello", " there"]))
    listener = await asyncio.start_server(refusing.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield refusing, port


async def test_a_refused_stream_is_retried_and_counted(server: tuple[RefusingOnce, int]) -> None:
    refusing, port = server
    record = StreamRecord(0, "ctx")
    live: dict[int, SseStreamProtocol] = {}

    await asyncio.wait_for(follow_stream(port, record, request_bytes(port, "ctx", "q"), live), 10)

    assert refusing.requests == 2
    assert record.outcome == "done"
    assert record.refusals == 1
    assert record.text == "Hello there"
    assert record.seq_gaps == 0
    assert record.started_at is not None and record.opened_at is not None
    assert record.started_at < record.opened_at  # TTFT counts from the refused attempt
    report = build_report([record], words=2, inter_token_s=0.0, ramp_started=0.0, ramp_s=0.0)
    assert (report["refusals"], report["streams_refused"]) == (1, 1)
    assert report["outcomes"] == {"done": 1}


async def test_reads_the_openai_shape_of_the_v1_route() -> None:
    refusing = RefusingOnce(openai_answer(["Hello", " there"]))
    refusing.requests = 1  # no refusal this time
    listener = await asyncio.start_server(refusing.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    record = StreamRecord(0, "ctx")
    async with listener:
        request = request_bytes(port, "ctx", "q", "v1")
        await asyncio.wait_for(follow_stream(port, record, request, {}, "v1"), 10)

    assert refusing.heads[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"X-Context-Id: ctx\r\n" in refusing.heads[0]
    assert record.outcome == "done"
    assert record.text == "Hello there"
    assert record.state == "fresh"
    assert len(record.delta_times) == 2
    assert record.seq_gaps == 0  # the finishing chunk and [DONE] share the done's id
