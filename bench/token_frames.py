"""The bytes the bench's token upstream writes: OpenAI chunk events in chunked transfer coding.

Encoded once per distinct piece (the upstream keeps a cache), so that a token costs one write.
The chunked body's terminator (``0\\r\\n\\r\\n``) is its own constant: the upstream writes it
separately, after ``data: [DONE]`` (see ``bench.token_upstream``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

CHUNK_ID = "chatcmpl-bench"
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 413: "Content Too Large"}
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n"
)
DONE_EVENT = b"data: [DONE]\n\n"
TERMINATOR = b"0\r\n\r\n"  # the end of a chunked body


def chunk_frame(payload: Mapping[str, Any]) -> bytes:
    """One SSE event as one chunk of the chunked transfer coding."""
    return sse_chunk(b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n")


def sse_chunk(event: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(event), event)


def completion_chunk(delta: Mapping[str, str], finish_reason: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": dict(delta), "finish_reason": finish_reason}
    return {"id": CHUNK_ID, "object": "chat.completion.chunk", "choices": [choice]}


OPENING = chunk_frame(completion_chunk({"role": "assistant", "content": ""}))
STOP = chunk_frame(completion_chunk({}, "stop"))
DONE = sse_chunk(DONE_EVENT)


def content_frame(piece: str) -> bytes:
    return chunk_frame(completion_chunk({"content": piece}))


def usage_frame(pieces: int) -> bytes:
    usage = {"prompt_tokens": 10, "completion_tokens": pieces, "total_tokens": 10 + pieces}
    return chunk_frame({"id": CHUNK_ID, "object": "chat.completion.chunk", "choices": [],
                        "usage": usage})  # fmt: skip


def plain_response(status: int, payload: Any, *, keep_alive: bool) -> bytes:
    body = json.dumps(payload).encode()
    head = (
        f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n" + ("" if keep_alive else "Connection: close\r\n")
    )
    return head.encode("ascii") + b"\r\n" + body


def error_payload(message: str, status: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "code": status}}
