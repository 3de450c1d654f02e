"""The service's raw SSE output, read by a strict WHATWG-following parser, is exactly right."""

from __future__ import annotations

import httpx
import pytest

from rag_service.upstream_events import Resumed, RetryNotice, TextDelta
from tests.fakes.upstream import Pause, ScriptedUpstream, completed
from tests.streaming.helpers import post_stream
from tests.streaming.sse_spec import SseEvent, parse_sse

# Pieces that would break a careless encoder: line breaks of every kind, text that looks like SSE
# fields or comments, JSON escapes, non-BMP characters, separators JSON leaves unescaped.
TRICKY_PIECES = [
    "line one\n",
    "line two\r\n",
    "carriage\r",
    "data: not a field",
    "\n: not a comment\n",
    "id: not an id\n\n",
    'quote " and backslash \\',
    "nul \0 tab \t bell \x07",
    "line sep \u2028 para sep \u2029",
    "größe € 😀",
    "",  # an empty piece adds nothing and costs no event
    "event: done\ndata: {}",
]
KNOWN_EVENTS = {"meta", "delta", "retry", "resumed", "done", "error"}


@pytest.mark.parametrize("stream_overrides", [{"ping_interval_s": 0.02}])
async def test_raw_stream_follows_the_event_stream_format(
    client: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    upstream.script = [
        TextDelta(TRICKY_PIECES[0]),
        RetryNotice(attempt=2, max_attempts=3, delay_s=0.01, reason="read_timeout"),
        Pause(0.15),  # idle long enough for pings between events
        Resumed(attempt=2, strategy="replay"),
        *[TextDelta(piece) for piece in TRICKY_PIECES[1:]],
        completed(),
    ]

    response = await post_stream(client)
    raw = response.content
    parsed = parse_sse(raw)
    events = parsed.events

    assert parsed.discarded_tail == ""  # the stream ends on a complete event
    assert parsed.ignored_fields == []
    assert parsed.items[0][0] == "retry"
    assert parsed.reconnection_ms is not None
    assert set(parsed.comments) == {"ping"}
    assert len(parsed.comments) >= 1
    assert_ids_and_types(events)
    assert raw.count(b"\ndata:") + raw.startswith(b"data:") == len(events)  # one data line each
    assert "".join(e.json()["text"] for e in events if e.type == "delta") == "".join(TRICKY_PIECES)
    assert [e.json() for e in events if e.type in ("retry", "resumed")] == [
        {"attempt": 2, "max_attempts": 3, "delay_ms": 10, "reason": "read_timeout"},
        {"attempt": 2, "strategy": "replay"},
    ]


def assert_ids_and_types(events: list[SseEvent]) -> None:
    stream_id = events[0].json()["stream_id"]
    assert events[0].type == "meta"
    assert events[-1].type == "done"
    assert {e.type for e in events} <= KNOWN_EVENTS
    assert all(e.own_id for e in events)
    assert [e.last_event_id for e in events] == [
        f"{stream_id}:{seq}" for seq in range(1, len(events) + 1)
    ]


def test_the_parser_follows_the_spec_on_line_endings_ids_and_data() -> None:
    """The checker itself: CRLF/CR/LF, BOM, comments, data joining, id persistence and reset."""
    raw = (
        b"\xef\xbb\xbfretry: 10\r\n: hello\rid: a\r\nevent: e\ndata: x\ndata:y\n\n"
        b"data: z\nid\n\n"
        b"id: keep\n\n"
        b"retry: 5x\ndata\n\n"
        b"data: w\ncustom: 1\n\n"
        b"data: lost"
    )

    parsed = parse_sse(raw)

    assert [(e.type, e.data, e.last_event_id, e.own_id) for e in parsed.events] == [
        ("e", "x\ny", "a", True),
        ("message", "z", "", True),  # `id` with no value resets the last event id
        ("message", "", "keep", False),  # a bare `data` line is an empty data line
        ("message", "w", "keep", False),  # the id persists from the earlier block
    ]
    assert parsed.reconnection_ms == 10  # "5x" is not all digits: ignored
    assert parsed.comments == ["hello"]
    assert parsed.ignored_fields == ["custom"]
    assert parsed.discarded_tail == "data: lost"
