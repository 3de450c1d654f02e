"""The incremental SSE parser: line endings, fields, chunk boundaries anywhere."""

from __future__ import annotations

import itertools
import random

import pytest

from rag_service.sse_parser import SSEEvent, SSEParser


def parse(*chunks: bytes) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events


@pytest.mark.parametrize("ending", [b"\n", b"\r", b"\r\n"])
def test_every_line_ending_dispatches_events(ending: bytes) -> None:
    stream = b"data: one" + ending + ending + b"data: two" + ending + ending
    assert [event.data for event in parse(stream)] == ["one", "two"]


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    # Were the LF a second line end, it would dispatch an empty event after "a" and join wrongly.
    events = parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n")
    assert events == [SSEEvent(data="a\nb")]


def test_lone_cr_at_chunk_end_followed_by_text_is_a_line_end() -> None:
    assert parse(b"data: a\r", b"\r") == [SSEEvent(data="a")]
    assert parse(b"data: a\r", b"data: b\r\r") == [SSEEvent(data="a\nb")]


def test_comments_are_ignored_and_multi_line_data_joins_with_newline() -> None:
    stream = b': keep-alive\ndata: {\ndata:  "a": 1\n: another comment\ndata: }\n\n'
    assert parse(stream) == [SSEEvent(data='{\n "a": 1\n}')]


def test_only_one_leading_space_is_stripped_and_colonless_lines_are_fields() -> None:
    events = parse(b"data:no space\ndata:  two spaces\ndata\n\n")
    assert events == [SSEEvent(data="no space\n two spaces\n")]


def test_event_id_and_retry_fields() -> None:
    stream = b"event: error\nid: 7\nretry: 1500\ndata: {}\n\ndata: next\n\n"
    assert parse(stream) == [
        SSEEvent(data="{}", event="error", id="7", retry_ms=1500),
        SSEEvent(data="next", event="message", id="7", retry_ms=1500),  # id and retry persist
    ]


def test_invalid_retry_and_nul_id_are_ignored() -> None:
    assert parse(b"retry: 1.5\nid: a\x00b\ndata: x\n\n") == [SSEEvent(data="x")]


def test_event_without_data_is_not_dispatched() -> None:
    assert parse(b"event: ping\n\nid: 3\n\n: hi\n\n") == []


def test_bom_at_stream_start_is_dropped_even_when_split() -> None:
    bom = "\ufeff".encode()
    assert parse(bom[:1], bom[1:] + b"data: x\n\n") == [SSEEvent(data="x")]
    # Only at the very start: a later BOM is part of the data.
    assert parse(b"data: x\n\n", b"data: " + bom + b"y\n\n")[1].data == "\ufeffy"


def test_utf8_split_inside_a_character() -> None:
    encoded = "data: Grüße 😀\n\n".encode()
    split_at = encoded.index("😀".encode()) + 2
    assert parse(encoded[:split_at], encoded[split_at:]) == [SSEEvent(data="Grüße 😀")]


def test_done_marker_is_an_ordinary_event() -> None:
    assert parse(b"data: [DONE]\n\n") == [SSEEvent(data="[DONE]")]


def test_unterminated_event_is_pending_not_dispatched() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"choices": [{"delta"') == []
    assert parser.has_pending_data
    assert parser.feed(b": x\n\n") == [SSEEvent(data='{"choices": [{"delta": x')]


STREAM = (
    "\ufeff: opening comment\r\n"
    'event: delta\r\nid: 1\r\ndata: {"a":\r\ndata: "Grüße"}\r\n\r\n'
    "data: line one\rdata: line two\r\r"
    "retry: 250\ndata:😀 emoji\n\n"
    'event: error\ndata: {"error": {"message": "boom"}}\n\n'
    "data: [DONE]\r\n\r\n"
).encode()


def test_any_chunking_yields_the_same_events() -> None:
    """Property: splitting the byte stream anywhere never changes the events (seeded search)."""
    expected = parse(STREAM)
    assert len(expected) == 5
    rng = random.Random(20240601)
    for _ in range(500):
        cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 12)))
        bounds = [0, *cuts, len(STREAM)]
        chunks = [STREAM[a:b] for a, b in itertools.pairwise(bounds)]
        assert parse(*chunks) == expected, chunks


def test_byte_by_byte_feeding() -> None:
    assert parse(*(STREAM[i : i + 1] for i in range(len(STREAM)))) == parse(STREAM)


TOKEN_EVENTS = [
    b'data: {"choices":[{"delta":{"content":"Gr\xc3\xbc"}}]}\n\n',  # what an upstream sends per token
    b"id: 7\nretry: 300\n\n",  # fields that later events carry
    b'data: {"n":2}\n\n',
    b"event: error\n",  # a named event split over two pieces: the second must not pass as a message
    b'data: {"n":3}\n\n',
    b"data: [DONE]\n\n",
]


def test_whole_token_events_parse_as_when_fed_byte_by_byte() -> None:
    """One ``data:`` line plus its blank line per piece takes a shortcut; it must not show."""
    stream = b"".join(TOKEN_EVENTS)

    by_piece = parse(*TOKEN_EVENTS)

    assert by_piece == parse(*(stream[i : i + 1] for i in range(len(stream))))
    assert [e.event for e in by_piece] == ["message", "message", "error", "message"]
    assert by_piece[1] == SSEEvent(data='{"n":2}', id="7", retry_ms=300)


def test_a_piece_after_an_unfinished_line_is_not_taken_as_a_whole_event() -> None:
    parser = SSEParser()
    parser.feed(b"data: one\n")  # the event is open: the next data line belongs to it
    assert parser.feed(b"data: two\n\n") == [SSEEvent(data="one\ntwo")]


def test_a_piece_cut_inside_a_character_keeps_the_decoders_rules() -> None:
    word = "Grüße".encode()
    assert parse(b"data: x\n\n", b"data: " + word[:3], word[3:] + b"\n\n") == [
        SSEEvent(data="x"),
        SSEEvent(data="Grüße"),
    ]
    assert parse(b"data: \xff\n\n") == [SSEEvent(data="\ufffd")]  # invalid bytes are replaced


def test_a_byte_held_back_by_the_decoder_belongs_to_the_next_piece() -> None:
    # The lone lead byte and "d" make one invalid sequence: the line's field name is no longer
    # "data", so no second event may come out of it.
    assert parse(b"data: x\n\n\xc3", b"data: y\n\n") == [SSEEvent(data="x")]


@pytest.mark.parametrize(
    "pieces",
    [
        [b'data: {"n":1}\n\ndata: {"n":2}\n\ndata: [DONE]\n\n'],  # reads that fell behind
        [b"data: a\n\ndata: b\n\n", b"data: c\n\n"],
        [b"data: a\n\n: ping\n\ndata: b\n\n"],  # a comment among them: the general path
        [b"data: a\n\ndata: b\ndata: c\n\n"],  # a two-line event among them
        [b"data: a\n\n\n\ndata: b\n\n"],  # an extra blank line
        [b"data: a\n\nevent: error\ndata: b\n\n"],
        [b"data: a\n\ndata: b\n\ndata: unfinish", b"ed\n\n"],
    ],
)
def test_several_whole_events_in_one_piece_parse_as_when_fed_byte_by_byte(
    pieces: list[bytes],
) -> None:
    stream = b"".join(pieces)
    assert parse(b"data: first\n\n", *pieces) == parse(
        *(bytes([b]) for b in b"data: first\n\n" + stream)
    )
