"""The service's raw SSE output, read by the project's one SSE parser, is exactly right.

The parser's own conformance to the spec is tested in tests/test_sse_parser.py.
"""

from __future__ import annotations

import httpx
import pytest

from rag_service.domain import Resumed, RetryNotice, TextDelta
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

    assert not parsed.unterminated  # the stream ends on a complete event
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


def test_the_test_view_tells_own_ids_and_a_cut_tail() -> None:
    """What ``parse_sse`` adds to the parser's events: whose id is its own, order, the cut."""
    parsed = parse_sse(b"retry: 10\nid: a\ndata: x\n\n: hi\nid: b\n\ndata: y\n\nnew: 1\ndata: z")

    assert parsed.events == [
        SseEvent("message", "x", "a", True),
        SseEvent("message", "y", "b", False),
    ]
    assert [kind for kind, _ in parsed.items] == [
        "retry",
        "event",
        "comment",
        "event",
        "ignored_field",
    ]
    assert (parsed.reconnection_ms, parsed.comments, parsed.ignored_fields) == (10, ["hi"], ["new"])
    assert parsed.unterminated
    assert parsed.last_event_id == "b"
    assert parsed.blocks_without_data == 1  # the block of "id: b"
    assert parse_sse(b"id: a\n\nid: b\n").last_event_id == "a"  # b's block never ended
    assert not parse_sse(b"data: z\n\n").unterminated
