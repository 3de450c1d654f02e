"""The project's one SSE parser (``rag_service.sse_parser``) against the WHATWG event-stream rules.

https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

The only place the spec itself is tested: every other test reads streams through this parser
(``tests/streaming/sse_spec.py``). Chunks are cut anywhere, down to one byte at a time, and must
give what the whole body gives, to the parser's events and to what its observer hears.
"""

from __future__ import annotations

import itertools
import random

import pytest

from rag_service.sse_parser import SSEEvent, SSEParser


class Heard:
    """An ``SSEObserver`` that writes down everything in order, events included."""

    def __init__(self) -> None:
        self.log: list[tuple[object, ...]] = []

    def on_comment(self, text: str) -> None:
        self.log.append(("comment", text))

    def on_id(self, value: str) -> None:
        self.log.append(("id", value))

    def on_retry(self, retry_ms: int) -> None:
        self.log.append(("retry", retry_ms))

    def on_unknown_field(self, name: str, value: str) -> None:
        self.log.append(("unknown", name, value))

    def on_block_end(self, event: SSEEvent | None) -> None:
        self.log.append(("end", event))


def parse(*chunks: bytes) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events


def heard(*chunks: bytes) -> list[tuple[object, ...]]:
    """What an observer hears; the events it is told of are the ones ``feed`` returns."""
    observer = Heard()
    parser = SSEParser(observer)
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    assert [entry[1] for entry in observer.log if entry[0] == "end" and entry[1]] == events
    return observer.log


def byte_by_byte(stream: bytes) -> list[bytes]:
    return [stream[i : i + 1] for i in range(len(stream))]


# -- line ends ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ending", [b"\n", b"\r", b"\r\n"])
def test_every_line_ending_dispatches_events(ending: bytes) -> None:
    stream = b"data: one" + ending + ending + b"data: two" + ending + ending
    assert [event.data for event in parse(stream)] == ["one", "two"]


def test_line_endings_may_be_mixed_in_one_stream() -> None:
    assert parse(b"data: a\r\ndata: b\rdata: c\n\r\n") == [SSEEvent(data="a\nb\nc")]


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    # Were the LF a second line end, it would dispatch an empty event after "a" and join wrongly.
    events = parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n")
    assert events == [SSEEvent(data="a\nb")]


def test_lone_cr_at_chunk_end_followed_by_text_is_a_line_end() -> None:
    assert parse(b"data: a\r", b"\r") == [SSEEvent(data="a")]
    assert parse(b"data: a\r", b"data: b\r\r") == [SSEEvent(data="a\nb")]


# -- BOM ------------------------------------------------------------------------------------------


def test_bom_at_stream_start_is_dropped_even_when_split() -> None:
    bom = "\ufeff".encode()
    assert parse(bom[:1], bom[1:] + b"data: x\n\n") == [SSEEvent(data="x")]
    # Only at the very start: a later BOM is part of the data.
    assert parse(b"data: x\n\n", b"data: " + bom + b"y\n\n")[1].data == "\ufeffy"


def test_only_one_bom_is_dropped() -> None:
    bom = "\ufeff".encode()
    assert heard(bom + bom + b"data: x\n\n") == [
        ("unknown", "\ufeffdata", "x"),  # the second BOM starts the field name
        ("end", None),
    ]


# -- comments and fields --------------------------------------------------------------------------


def test_comments_are_ignored_and_multi_line_data_joins_with_newline() -> None:
    stream = b': keep-alive\ndata: {\ndata:  "a": 1\n: another comment\ndata: }\n\n'
    assert parse(stream) == [SSEEvent(data='{\n "a": 1\n}')]


def test_the_observer_hears_comments_in_place() -> None:
    assert heard(b":ping\n: ping\n:  two\ndata: x\n:\n\n") == [
        ("comment", "ping"),
        ("comment", "ping"),  # one space dropped, as after a field's colon
        ("comment", " two"),
        ("comment", ""),
        ("end", SSEEvent(data="x")),
    ]


def test_only_one_leading_space_is_stripped_and_colonless_lines_are_fields() -> None:
    events = parse(b"data:no space\ndata:  two spaces\ndata\ndata:\n\n")
    assert events == [SSEEvent(data="no space\n two spaces\n\n")]


def test_a_bare_data_line_dispatches_an_empty_event() -> None:
    assert parse(b"data\n\n") == [SSEEvent(data="")]


def test_the_field_name_runs_to_the_first_colon() -> None:
    assert parse(b"data: a: b:c\n\n") == [SSEEvent(data="a: b:c")]
    assert heard(b"data : x\nDATA: y\n\n") == [
        ("unknown", "data ", "x"),  # names are exact: no trimming, no case folding
        ("unknown", "DATA", "y"),
        ("end", None),
    ]


def test_event_type_applies_to_its_block_only() -> None:
    stream = b"event: delta\ndata: a\n\ndata: b\n\nevent: ping\n\ndata: c\n\n"
    assert [(e.event, e.data) for e in parse(stream)] == [
        ("delta", "a"),
        ("message", "b"),
        ("message", "c"),  # a block without data resets the type too
    ]


def test_event_without_data_is_not_dispatched() -> None:
    assert parse(b"event: ping\n\nid: 3\n\n: hi\n\n") == []


def test_done_marker_is_an_ordinary_event() -> None:
    assert parse(b"data: [DONE]\n\n") == [SSEEvent(data="[DONE]")]


# -- id and retry ---------------------------------------------------------------------------------


def test_event_id_and_retry_fields_persist() -> None:
    stream = b"event: error\nid: 7\nretry: 1500\ndata: {}\n\ndata: next\n\n"
    assert parse(stream) == [
        SSEEvent(data="{}", event="error", id="7", retry_ms=1500),
        SSEEvent(data="next", event="message", id="7", retry_ms=1500),  # id and retry persist
    ]


def test_an_empty_id_resets_the_last_event_id() -> None:
    assert parse(b"id: a\ndata: x\n\nid\ndata: y\n\nid:\ndata: z\n\n") == [
        SSEEvent(data="x", id="a"),
        SSEEvent(data="y", id=""),
        SSEEvent(data="z", id=""),
    ]


def test_an_id_without_data_still_sets_the_last_event_id() -> None:
    assert parse(b"id: keep\n\ndata: x\n\n") == [SSEEvent(data="x", id="keep")]


def test_an_id_with_nul_is_ignored() -> None:
    stream = b"id: a\ndata: x\n\nid: b\x00c\ndata: y\n\n"
    assert parse(stream)[1] == SSEEvent(data="y", id="a")
    assert ("id", "b\x00c") not in heard(stream)


@pytest.mark.parametrize(
    "value", [b"1.5", b"5x", b"-1", b"", b" 10", b"1e3", "١٢".encode(), "１０".encode()]
)
def test_retry_that_is_not_all_ascii_digits_is_ignored(value: bytes) -> None:
    stream = b"retry: 250\nretry: " + value + b"\ndata: x\n\n"
    assert parse(stream) == [SSEEvent(data="x", retry_ms=250)]
    assert [entry for entry in heard(stream) if entry[0] == "retry"] == [("retry", 250)]


def test_the_observer_hears_fields_in_stream_order() -> None:
    stream = b"retry: 10\r\n: hello\rid: a\r\nevent: e\ndata: x\ndata:y\n\ncustom: 1\nid\n\n"
    assert heard(stream) == [
        ("retry", 10),
        ("comment", "hello"),
        ("id", "a"),
        ("end", SSEEvent(data="x\ny", event="e", id="a", retry_ms=10)),
        ("unknown", "custom", "1"),
        ("id", ""),
        ("end", None),
    ]


# -- the end of the stream ------------------------------------------------------------------------


def test_an_unterminated_last_event_is_never_dispatched() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n\ndata: lost") == [SSEEvent(data="a")]
    assert parser.has_pending_data  # what a reader at the end of the stream sees as a cut
    closed_line = SSEParser()
    assert closed_line.feed(b"data: a\n\ndata: lost\n") == [SSEEvent(data="a")]
    assert closed_line.has_pending_data  # a whole line, but no blank line after it
    no_data = SSEParser()
    assert no_data.feed(b"data: a\n\nevent: e\nid: 1\n") == [SSEEvent(data="a")]
    assert not no_data.has_pending_data  # a block without data would dispatch nothing anyway


def test_unterminated_event_is_pending_until_its_blank_line() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"choices": [{"delta"') == []
    assert parser.has_pending_data
    assert parser.feed(b": x\n\n") == [SSEEvent(data='{"choices": [{"delta": x')]
    assert not parser.has_pending_data


# -- UTF-8 ----------------------------------------------------------------------------------------


def test_utf8_split_inside_a_character() -> None:
    encoded = "data: Grüße 😀\n\n".encode()
    split_at = encoded.index("😀".encode()) + 2
    assert parse(encoded[:split_at], encoded[split_at:]) == [SSEEvent(data="Grüße 😀")]


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


# -- chunking -------------------------------------------------------------------------------------

STREAM = (
    "\ufeff: opening comment\r\n"
    'event: delta\r\nid: 1\r\ndata: {"a":\r\ndata: "Grüße"}\r\n\r\n'
    "data: line one\rdata: line two\r\r"
    "retry: 250\ndata:😀 emoji\n\n"
    "id: 2\x00\nretry: 9s\nx-custom: 1\n: mid-stream\n\n"
    'event: error\ndata: {"error": {"message": "boom"}}\n\n'
    "id\ndata: [DONE]\r\n\r\n"
    "data: cut"
).encode()


def test_the_whole_stream() -> None:
    assert parse(STREAM) == [
        SSEEvent(data='{"a":\n"Grüße"}', event="delta", id="1"),
        SSEEvent(data="line one\nline two", id="1"),
        SSEEvent(data="😀 emoji", id="1", retry_ms=250),
        SSEEvent(data='{"error": {"message": "boom"}}', event="error", id="1", retry_ms=250),
        SSEEvent(data="[DONE]", id="", retry_ms=250),
    ]


def test_byte_by_byte_feeding_equals_whole_feeding() -> None:
    assert parse(*byte_by_byte(STREAM)) == parse(STREAM)
    assert heard(*byte_by_byte(STREAM)) == heard(STREAM)


def test_any_chunking_yields_the_same_events() -> None:
    """Property: splitting the byte stream anywhere never changes the events (seeded search)."""
    expected, expected_heard = parse(STREAM), heard(STREAM)
    rng = random.Random(20240601)
    for _ in range(500):
        cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 12)))
        bounds = [0, *cuts, len(STREAM)]
        chunks = [STREAM[a:b] for a, b in itertools.pairwise(bounds)]
        assert parse(*chunks) == expected, chunks
        assert heard(*chunks) == expected_heard, chunks


# -- the per-token shortcut (whole `data:` events, one or more per read) ---------------------------

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

    assert by_piece == parse(*byte_by_byte(stream))
    assert [e.event for e in by_piece] == ["message", "message", "error", "message"]
    assert by_piece[1] == SSEEvent(data='{"n":2}', id="7", retry_ms=300)
    assert heard(*TOKEN_EVENTS) == heard(*byte_by_byte(stream))  # an observer misses nothing


def test_a_piece_after_an_unfinished_line_is_not_taken_as_a_whole_event() -> None:
    parser = SSEParser()
    parser.feed(b"data: one\n")  # the event is open: the next data line belongs to it
    assert parser.feed(b"data: two\n\n") == [SSEEvent(data="one\ntwo")]


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
    first = b"data: first\n\n"
    assert parse(first, *pieces) == parse(*byte_by_byte(first + b"".join(pieces)))
