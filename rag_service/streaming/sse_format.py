"""The bytes of the service's Server-Sent Events, and the parsing of ``Last-Event-ID``.

Every event is written in one shape, which the WHATWG EventSource parser reads unambiguously:

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
from json.encoder import encode_basestring
from typing import Any

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
