"""A session's events as its readers get them, and the encoders that turn them into bytes.

A session holds its events compactly (``replay_buffer``) and hands them out as two kinds:

- ``DeltaEvent``: a piece of the answer, as its text's JSON string literal (quotes included),
  which is what the buffer stores. No encoder ever decodes it: a delta is a byte template with
  the literal spliced in, so a token costs the same on every endpoint;
- ``NamedEvent``: any other event (``meta``, ``retry``, ``resumed``, ``done``, ``error``), as its
  name and its data, one line of JSON. There are a handful per answer, so an encoder that needs
  the fields reads them with ``payload()``.

Each kind of client has an ``EventEncoder``: ``NativeSseEncoder`` here writes ``/rag/stream``'s
events (``sse_format``), ``ChunkEncoder`` (``rag_service.api.openai_stream``) writes OpenAI
chunks. Both read the same events, so ``GET /rag/stream/{id}`` and ``/v1/chat/completions`` show
one answer under the same ids.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from rag_service.streaming.sse_format import PING, encode_delta, encode_event


class DeltaEvent(NamedTuple):
    seq: int
    literal: bytes  # the text as a JSON string literal, quotes included


class NamedEvent(NamedTuple):
    seq: int
    name: str
    data: bytes  # one line of JSON: an object

    def payload(self) -> dict[str, Any]:
        value = json.loads(self.data)
        assert isinstance(value, dict), "an event's data is a JSON object"
        return value


SessionEvent = DeltaEvent | NamedEvent


class EventEncoder(Protocol):
    """What one kind of client reads for a session's events."""

    @property
    def ping(self) -> bytes:
        """Written after a while without output (see ``keepalive``)."""

    def encode(self, events: Sequence[SessionEvent]) -> bytes:
        """The bytes for ``events`` (consecutive, in order); may be empty."""

    def fell_behind(self) -> bytes:
        """The last write of a reader that fell out of the replay window (``b""``: none)."""


class NativeSseEncoder:
    """The events of ``/rag/stream``: ``id:``, ``event:`` and ``data:`` lines (``sse_format``).

    A reader that fell behind the replay window just ends: its resume then answers 404, so an
    answer with a hole in it never passes for a whole one.
    """

    __slots__ = ("_id_prefix",)

    ping = PING

    def __init__(self, stream_id: str) -> None:
        self._id_prefix = f"{stream_id}:".encode()

    def encode(self, events: Sequence[SessionEvent]) -> bytes:
        if len(events) == 1:  # the usual case while following a live answer
            return self.encode_one(events[0])
        return b"".join(map(self.encode_one, events))

    def encode_one(self, event: SessionEvent) -> bytes:
        if type(event) is DeltaEvent:
            return encode_delta(self._id_prefix, event.seq, event.literal)
        assert type(event) is NamedEvent
        return encode_event(self._id_prefix, event.seq, event.name, event.data)

    def fell_behind(self) -> bytes:
        return b""
