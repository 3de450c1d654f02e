"""A stream's events, the bytes of the service's Server-Sent Events, and ``Last-Event-ID``.

A session hands its readers its events in two kinds (``ReplayBuffer.read_events``; the types
are in ``rag_service.domain``, as the replicas share them):

- ``DeltaEvent``: a piece of the answer, as its text's JSON string literal (quotes included),
  which is what the replay buffer stores. No encoder ever decodes it: a delta is a byte template
  with the literal spliced in, so a token costs the same on every endpoint;
- ``NamedEvent``: any other event (``meta``, ``retry``, ``resumed``, ``done``, ``error``), as its
  name and its data, one line of JSON. There are a handful per answer, so an encoder that needs
  the fields reads them with ``payload()``.

Each kind of client has an ``EventEncoder``: ``NativeSseEncoder`` writes ``/rag/stream``'s events,
``ChunkEncoder`` (``rag_service.openai.stream``) writes OpenAI chunks. Both read the same
events, so ``GET /rag/stream/{id}`` and ``/v1/chat/completions`` show one answer under the same
ids. Every native event is written in one shape, which the WHATWG EventSource parser reads unambiguously:

    id: <stream_id>:<seq>\\n
    event: <name>\\n
    data: <one JSON object on one line>\\n
    \\n

JSON never contains a raw CR or LF (``json.dumps`` escapes them), so ``data`` is always a single
line. Lines end with LF only; the spec accepts LF, CR and CRLF alike and LF is the smallest.
"""

from __future__ import annotations

import json
import random
import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Sequence
from json.encoder import encode_basestring
from typing import Any, Protocol

from rag_service.domain import DeltaEvent, NamedEvent, SessionEvent
from rag_service.errors import InvalidInput

PING = b": ping\n\n"

# secrets.token_urlsafe alphabet; a stream id never contains ':' (the seq separator) or a newline.
_STREAM_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")
_STREAM_ID_BYTES = 16
_MAX_SEQ_DIGITS = 12


def new_stream_id() -> str:
    """An unguessable id (128 random bits, 22 URL-safe characters) valid inside Last-Event-ID."""
    return secrets.token_urlsafe(_STREAM_ID_BYTES)


def is_well_formed_stream_id(value: str) -> bool:
    return _STREAM_ID_PATTERN.fullmatch(value) is not None


# Stateless once built: ``json.dumps`` with options would build a new encoder for every event.
_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def to_json(payload: dict[str, Any] | list[Any]) -> bytes:
    """Compact one-line JSON; non-ASCII stays UTF-8 (SSE streams are always UTF-8)."""
    return _COMPACT_JSON.encode(payload).encode()


def json_string(text: str) -> bytes:
    """``text`` as a JSON string literal, quotes included: what ``json.dumps(text,
    ensure_ascii=False)`` gives, from the encoder it uses for a string (one call per token;
    ``json.dumps`` with options builds a whole ``JSONEncoder`` each time, ten times slower)."""
    return encode_basestring(text).encode()


def encode_event(id_prefix: bytes, seq: int, event: str, data: bytes) -> bytes:
    """One complete event; ``id_prefix`` is ``b"<stream_id>:"`` and ``data`` one-line JSON."""
    return b"id: %s%d\nevent: %s\ndata: %s\n\n" % (id_prefix, seq, event.encode(), data)


def encode_delta(id_prefix: bytes, seq: int, text_literal: bytes) -> bytes:
    """A ``delta`` event from the JSON string literal of its text (see ``json_string``)."""
    return b'id: %s%d\nevent: delta\ndata: {"text":%s}\n\n' % (id_prefix, seq, text_literal)


def retry_field(base_ms: int, rng: random.Random) -> bytes:
    """The ``retry:`` hint that opens every response, jittered to 0.5-1.5x of ``base_ms``.

    Clients that lost their connection together (a proxy restart, a deploy) would otherwise all
    come back after the same delay; spreading the hint spreads the reconnects.
    """
    hint = round(base_ms * rng.uniform(0.5, 1.5))
    return b"retry: %d\n\n" % hint


def parse_last_event_id(header: str | None, stream_id: str) -> int:
    """The seq after which a resuming reader continues (0: from the start).

    The header must name this stream: a reader cannot attach to another stream by passing its
    id, so a foreign or malformed id is a client error rather than "start from the beginning".
    """
    if header is None or not header.strip():
        return 0
    prefix, separator, seq_text = header.strip().rpartition(":")
    if not separator or prefix != stream_id:
        raise InvalidInput("Last-Event-ID does not belong to this stream")
    if not seq_text.isdigit() or not seq_text.isascii() or len(seq_text) > _MAX_SEQ_DIGITS:
        raise InvalidInput("Last-Event-ID must end in ':<seq>' with a non-negative integer seq")
    return int(seq_text)


# -- events and their encoders ---------------------------------------------------------------------


class EventEncoder(Protocol):
    """What one kind of client reads for a session's events."""

    @property
    def ping(self) -> bytes:
        """Written after a while without output (see ``keepalive``)."""

    def encode(self, events: Sequence[SessionEvent]) -> bytes:
        """The bytes for ``events`` (consecutive, in order); may be empty."""

    def fell_behind(self) -> bytes:
        """The last write of a reader that fell out of the replay window (``b""``: none)."""


class EventByEventEncoder(ABC):
    """An ``EventEncoder``'s ``encode`` for encoders that encode each event on its own."""

    __slots__ = ()

    def encode(self, events: Sequence[SessionEvent]) -> bytes:
        if len(events) == 1:  # the usual case while following a live answer
            return self.encode_one(events[0])
        return b"".join(map(self.encode_one, events))

    @abstractmethod
    def encode_one(self, event: SessionEvent) -> bytes:
        """The bytes for one event; may be empty."""


class NativeSseEncoder(EventByEventEncoder):
    """The events of ``/rag/stream``: ``id:``, ``event:`` and ``data:`` lines (see above).

    A reader that fell behind the replay window just ends: its resume then answers 404, so an
    answer with a hole in it never passes for a whole one.
    """

    __slots__ = ("_id_prefix",)

    ping = PING

    def __init__(self, stream_id: str) -> None:
        self._id_prefix = f"{stream_id}:".encode()

    def encode_one(self, event: SessionEvent) -> bytes:
        if type(event) is DeltaEvent:
            return encode_delta(self._id_prefix, event.seq, event.literal)
        assert type(event) is NamedEvent
        return encode_event(self._id_prefix, event.seq, event.name, event.data)

    def fell_behind(self) -> bytes:
        return b""
