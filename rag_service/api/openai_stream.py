"""Reading a stream session as OpenAI ``chat.completion.chunk`` events, or as one completion.

A session holds its events in the native SSE encoding (``rag_service.streaming.sse_format``:
one ``id:``/``event:``/``data:`` block per event). The facade reads those same events and
translates each one, so an OpenAI-style stream and ``GET /rag/stream/{stream_id}`` show the same
answer under the same ids:

    native event   OpenAI stream
    ------------   ------------------------------------------------------------------------
    meta           first chunk: delta {"role": "assistant", "content": ""} + extra "rag" field
    delta          chunk with delta {"content": text}
    retry/resumed  an SSE comment line (OpenAI chunks cannot express them)
    done           chunk with finish_reason, a usage chunk (stream_options.include_usage),
                   then ``data: [DONE]``
    error          ``data: {"error": {...}}``, then the stream ends (what OpenAI does)

Every ``data:`` event carries ``id: <stream_id>:<seq>`` of the native event it came from.

One quirk shapes the bytes: the OpenAI SDKs' SSE decoder (copied from httpx-sse) dispatches an
event at *every* blank line once an ``id`` has been seen, even when no ``data`` was given, and
then fails to parse the empty data as JSON. So nothing here is a block without ``data``: there is
no leading ``retry:`` block, and keep-alive and notice comments are single lines with no blank
line after them (valid SSE: comment lines are ignored wherever they appear).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from rag_service.errors import RagServiceError, ServiceUnavailable
from rag_service.streaming.registry import StreamRegistry
from rag_service.streaming.session import StreamSession
from rag_service.streaming.sse_format import to_json
from rag_service.streaming.sse_response import SessionResponse

PING_LINE = b": ping\n"
DONE_DATA = b"[DONE]"
FINISH_REASONS = frozenset({"stop", "length", "content_filter", "tool_calls", "function_call"})
_BATCH_EVENTS = 64


@dataclass(frozen=True)
class NativeEvent:
    """One event of a session as written by ``sse_format``: its seq, name and data."""

    seq: int
    name: str
    data: dict[str, Any]


def parse_native(chunk: bytes) -> list[NativeEvent]:
    """The events in ``chunk`` (whole blocks from ``StreamSession.read``)."""
    events = []
    for block in chunk.split(b"\n\n"):
        if not block:
            continue
        fields = dict(line.split(b": ", 1) for line in block.split(b"\n"))
        seq = int(fields[b"id"].rpartition(b":")[2])
        events.append(NativeEvent(seq, fields[b"event"].decode(), json.loads(fields[b"data"])))
    return events


async def follow_session(
    session: StreamSession,
    *,
    idle_after_s: float,
    disconnected: asyncio.Future[None] | None = None,
) -> AsyncGenerator[list[NativeEvent], None]:
    """A session's events from its first, in batches, until it ends (or ``disconnected``).

    An empty batch means nothing happened for ``idle_after_s`` (time for a keep-alive). Raises
    ``ServiceUnavailable`` when the reader fell out of the replay window: the events it missed
    are gone, and an answer with a hole in it must not pass for a whole one.
    """
    after_seq = 0
    while disconnected is None or not disconnected.done():
        if after_seq + 1 < session.first_seq:
            raise ServiceUnavailable(
                "the answer ran ahead of this reader beyond the replay window",
                retry_after_s=1.0,
            )
        chunk, after_seq = session.read(after_seq, _BATCH_EVENTS)
        if chunk:
            yield parse_native(chunk)
            continue
        if session.finished:
            return
        waiter = session.change_waiter()
        waiters: list[asyncio.Future[None]] = [waiter]
        if disconnected is not None:
            waiters.append(disconnected)
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=idle_after_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()  # abandoned when idle: the session must not keep it until its next event
        if not done:
            yield []


@dataclass(frozen=True)
class ChunkEncoder:
    """Encodes native events as the SSE bytes of OpenAI chunks for one completion."""

    stream_id: str
    model: str
    created: int
    include_usage: bool

    @property
    def completion_id(self) -> str:
        return completion_id(self.stream_id)

    def encode(self, event: NativeEvent) -> bytes:
        if event.name == "delta":
            return self._data(event.seq, self._chunk({"content": event.data["text"]}))
        if event.name == "meta":
            first = self._chunk({"role": "assistant", "content": ""})
            first["rag"] = rag_field(event.data)
            return self._data(event.seq, first)
        if event.name == "done":
            return self._ending(event.seq, event.data)
        if event.name == "error":
            return self._data(event.seq, {"error": event.data})
        if event.name in ("retry", "resumed"):
            attempt = int(event.data.get("attempt", 0))
            return b": %s attempt=%d\n" % (event.name.encode(), attempt)
        return b""

    def encode_error(self, error: RagServiceError) -> bytes:
        """A failure of the facade itself (no native event): an ``error`` data without id."""
        return b"data: %s\n\n" % to_json({"error": error.to_payload()})

    def _ending(self, seq: int, done: dict[str, Any]) -> bytes:
        final = self._chunk({}, finish_reason=finish_reason(done.get("finish_reason")))
        parts = [self._data(seq, final)]
        if self.include_usage:
            usage_chunk = self._chunk(None)
            usage_chunk["usage"] = done.get("usage")
            parts.append(self._data(seq, usage_chunk))
        parts.append(b"id: %s:%d\ndata: %s\n\n" % (self.stream_id.encode(), seq, DONE_DATA))
        return b"".join(parts)

    def _chunk(
        self, delta: dict[str, Any] | None, *, finish_reason: str | None = None
    ) -> dict[str, Any]:
        choices = []
        if delta is not None:
            choices.append(
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            )
        return {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }

    def _data(self, seq: int, payload: dict[str, Any]) -> bytes:
        return b"id: %s:%d\ndata: %s\n\n" % (self.stream_id.encode(), seq, to_json(payload))


def completion_id(stream_id: str) -> str:
    """The OpenAI id of a completion: its stream id, so clients can find the native stream."""
    return f"chatcmpl-{stream_id}"


def rag_field(meta: dict[str, Any]) -> dict[str, Any]:
    """The extra ``rag`` field: which context grounds the answer (from the ``meta`` event)."""
    context = meta.get("context", {})
    return {
        "stream_id": meta.get("stream_id"),
        "context_id": meta.get("context_id"),
        "state": context.get("state"),
        "age_s": context.get("age_s"),
        "catalog_version": context.get("catalog_version"),
        "sources": context.get("sources", []),
    }


def finish_reason(value: object) -> str:
    """OpenAI's finish reasons are a closed set; anything else (or none) reads as ``stop``."""
    return value if isinstance(value, str) and value in FINISH_REASONS else "stop"


@dataclass
class CollectedAnswer:
    """A whole answer read from a session: its ``meta``, text, and ``done`` or ``error``."""

    meta: dict[str, Any]
    text: str
    done: dict[str, Any] | None
    error: dict[str, Any] | None


async def collect_answer(session: StreamSession, *, idle_after_s: float) -> CollectedAnswer:
    """Read ``session`` to its end (the caller's reader must be attached, and detached after)."""
    meta: dict[str, Any] = {}
    pieces: list[str] = []
    done: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    batches = follow_session(session, idle_after_s=idle_after_s)
    async with contextlib.aclosing(batches):
        async for batch in batches:
            for event in batch:
                if event.name == "delta":
                    pieces.append(event.data["text"])
                elif event.name == "meta":
                    meta = event.data
                elif event.name == "done":
                    done = event.data
                elif event.name == "error":
                    error = event.data
    return CollectedAnswer(meta=meta, text="".join(pieces), done=done, error=error)


class ChunkStreamResponse(SessionResponse, Response):
    """Streams ``session`` as OpenAI chunks; detaches its (already attached) reader when done.

    Also a Starlette ``Response`` only so that a FastAPI endpoint may return it as it is.
    """

    ping = PING_LINE

    def __init__(
        self,
        session: StreamSession,
        registry: StreamRegistry,
        *,
        encoder: ChunkEncoder,
        headers: dict[str, str],
    ) -> None:
        super().__init__(session, registry, headers=headers)
        self.background = None  # FastAPI attaches background tasks here
        self._encoder = encoder

    def _encode(self, chunk: bytes) -> bytes:
        return b"".join(map(self._encoder.encode, parse_native(chunk)))

    def _fell_behind(self) -> bytes:
        return self._encoder.encode_error(
            ServiceUnavailable(
                "the answer ran ahead of this reader beyond the replay window", retry_after_s=1.0
            )
        )
