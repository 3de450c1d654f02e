"""Reading a stream session as OpenAI ``chat.completion.chunk`` events, or as one completion.

The facade reads a session's events (``rag_service.streaming.sse_format``) exactly as the native
stream does, and ``ChunkEncoder`` writes them as OpenAI chunks, so an OpenAI-style stream and
``GET /rag/stream/{stream_id}`` show the same answer under the same ids:

    native event   OpenAI stream
    ------------   ------------------------------------------------------------------------
    meta           first chunk: delta {"role": "assistant", "content": ""} + extra "rag" field
    delta          chunk with delta {"content": text}
    retry/resumed  an SSE comment line (OpenAI chunks cannot express them)
    done           chunk with finish_reason ("repetition" reads "stop"), a usage chunk
                   (stream_options.include_usage), then ``data: [DONE]``
    error          ``data: {"error": {...}}``, then the stream ends (what OpenAI does)

Every ``data:`` event carries ``id: <stream_id>:<seq>`` of the native event it came from.

A token costs what it costs on ``/rag/stream``: a delta chunk is a byte template, made once per
completion, with the delta's JSON string literal (as the session holds it) spliced in. Nothing
is parsed or serialised per token. Only the few other events are read as JSON.

One quirk shapes the bytes: the OpenAI SDKs' SSE decoder (copied from httpx-sse) dispatches an
event at *every* blank line once an ``id`` has been seen, even when no ``data`` was given, and
then fails to parse the empty data as JSON. So nothing here is a block without ``data``: there is
no leading ``retry:`` block, and keep-alive and notice comments are single lines with no blank
line after them (valid SSE: comment lines are ignored wherever they appear).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rag_service.domain import DeltaEvent, NamedEvent, SessionEvent
from rag_service.errors import RagServiceError, ServiceUnavailable
from rag_service.streaming import BATCH_EVENTS, EventByEventEncoder, StreamSession, to_json

PING_LINE = b": ping\n"
DONE_DATA = b"[DONE]"
FINISH_REASONS = frozenset({"stop", "length", "content_filter", "tool_calls", "function_call"})
# The service's own reasons, in OpenAI's words. "repetition": the answer was ended where it began
# to repeat an earlier block (rag_service.streaming.repetition). What came before is a whole
# answer, so "stop"; "length" would tell a client that asking for more could help.
FINISH_REASON_ALIASES = {"repetition": "stop"}
# Where a content chunk's text goes: JSON escapes every quote inside a string, so these bytes
# occur once in a chunk, as the delta itself, whatever the model name.
_EMPTY_CONTENT = b'"delta":{"content":""}'


def _fell_behind_error() -> ServiceUnavailable:
    return ServiceUnavailable(
        "the answer ran ahead of this reader beyond the replay window", retry_after_s=1.0
    )


class ChunkEncoder(EventByEventEncoder):
    """Encodes a session's events as the SSE bytes of OpenAI chunks for one completion
    (an ``EventEncoder``)."""

    __slots__ = ("_created", "_delta_format", "_id_prefix", "_include_usage", "_model", "stream_id")

    ping = PING_LINE

    def __init__(self, *, stream_id: str, model: str, created: int, include_usage: bool) -> None:
        self.stream_id = stream_id
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._id_prefix = f"{stream_id}:".encode()
        head, found, tail = to_json(self._chunk({"content": ""})).partition(_EMPTY_CONTENT)
        assert found and _EMPTY_CONTENT not in tail
        # A %-format: the seq and the literal are all that differ from one delta to the next.
        self._delta_format = b'id: %s%%d\ndata: %s"delta":{"content":%%s}%s\n\n' % (
            _percent_escaped(self._id_prefix),
            _percent_escaped(head),
            _percent_escaped(tail),
        )

    @property
    def completion_id(self) -> str:
        return completion_id(self.stream_id)

    def encode_one(self, event: SessionEvent) -> bytes:
        if type(event) is DeltaEvent:
            return self._delta_format % (event.seq, event.literal)
        assert type(event) is NamedEvent
        name = event.name
        if name == "meta":
            first = self._chunk({"role": "assistant", "content": ""})
            first["rag"] = rag_field(event.payload())
            return self._data(event.seq, first)
        if name == "done":
            return self._ending(event.seq, event.payload())
        if name == "error":
            return self._data(event.seq, {"error": event.payload()})
        if name in ("retry", "resumed"):
            attempt = int(event.payload().get("attempt", 0))
            return b": %s attempt=%d\n" % (name.encode(), attempt)
        return b""

    def fell_behind(self) -> bytes:
        """The events this reader missed are gone: an ``error`` data, and the stream ends."""
        return self.encode_error(_fell_behind_error())

    def encode_error(self, error: RagServiceError) -> bytes:
        """A failure of the facade itself (no native event): an ``error`` data without id."""
        return b"data: %s\n\n" % to_json({"error": error.to_payload()})

    def _ending(self, seq: int, done: dict[str, Any]) -> bytes:
        final = self._chunk({}, finish_reason=finish_reason(done.get("finish_reason")))
        parts = [self._data(seq, final)]
        if self._include_usage:
            usage_chunk = self._chunk(None)
            usage_chunk["usage"] = done.get("usage")
            parts.append(self._data(seq, usage_chunk))
        parts.append(b"id: %s%d\ndata: %s\n\n" % (self._id_prefix, seq, DONE_DATA))
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
            "created": self._created,
            "model": self._model,
            "system_fingerprint": None,
            "choices": choices,
        }

    def _data(self, seq: int, payload: dict[str, Any]) -> bytes:
        return b"id: %s%d\ndata: %s\n\n" % (self._id_prefix, seq, to_json(payload))


def _percent_escaped(data: bytes) -> bytes:
    return data.replace(b"%", b"%%")


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
    """OpenAI's finish reasons are a closed set: the service's own are translated
    (``FINISH_REASON_ALIASES``), anything else (or none) reads as ``stop``."""
    if not isinstance(value, str):
        return "stop"
    value = FINISH_REASON_ALIASES.get(value, value)
    return value if value in FINISH_REASONS else "stop"


@dataclass
class CollectedAnswer:
    """A whole answer read from a session: its ``meta``, text, and ``done`` or ``error``."""

    meta: dict[str, Any]
    text: str
    done: dict[str, Any] | None
    error: dict[str, Any] | None


async def collect_answer(session: StreamSession) -> CollectedAnswer:
    """Read ``session`` to its end (the caller's reader must be attached, and detached after).

    Events are read as they come, so a long answer cannot run out of the replay window behind
    this reader (``ServiceUnavailable`` if the process was too busy to keep up). The text is
    decoded once at the end, from the deltas' literals joined into one JSON array.
    """
    meta: dict[str, Any] = {}
    literals: list[bytes] = []
    done: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    after_seq = 0
    while True:
        if after_seq + 1 < session.first_seq:
            raise _fell_behind_error()
        events = session.read_events(after_seq, BATCH_EVENTS)
        if not events:
            if session.ended_for_readers:
                break
            await session.change_waiter()
            continue
        after_seq = events[-1].seq
        for event in events:
            if isinstance(event, DeltaEvent):
                literals.append(event.literal)
            elif event.name == "meta":
                meta = event.payload()
            elif event.name == "done":
                done = event.payload()
            elif event.name == "error":
                error = event.payload()
    pieces: list[str] = json.loads(b"[%s]" % b",".join(literals))
    return CollectedAnswer(meta=meta, text="".join(pieces), done=done, error=error)
