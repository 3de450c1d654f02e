"""The compact replay buffer, its events, the native encoder and the SSE formatting helpers."""

from __future__ import annotations

import json
import random

import pytest

from rag_service.errors import InvalidInput, RagServiceError
from rag_service.streaming.replay_buffer import ReplayBuffer
from rag_service.streaming.sse_format import (
    DeltaEvent,
    NamedEvent,
    NativeSseEncoder,
    is_well_formed_stream_id,
    new_stream_id,
    parse_last_event_id,
    retry_field,
)
from tests.streaming.sse_spec import parse_sse

SID = "S" * 22
ENCODER = NativeSseEncoder(SID)


def native(buffer: ReplayBuffer, after_seq: int, max_events: int = 1000) -> bytes:
    return ENCODER.encode(buffer.read_events(after_seq, max_events))


def test_events_encode_with_ids_names_and_one_line_json() -> None:
    buffer = ReplayBuffer(capacity=16)
    buffer.append_event("meta", {"stream_id": SID})
    buffer.append_delta('He said "hi"\nthen\\left')
    buffer.append_event("done", {"finish_reason": "stop"})

    meta, delta, done = buffer.read_events(0, 10)

    assert meta == NamedEvent(1, "meta", f'{{"stream_id":"{SID}"}}'.encode())
    assert delta == DeltaEvent(2, b'"He said \\"hi\\"\\nthen\\\\left"')
    assert done.seq == 3
    assert ENCODER.encode([meta]) == (
        f'id: {SID}:1\nevent: meta\ndata: {{"stream_id":"{SID}"}}\n\n'.encode()
    )
    assert (
        ENCODER.encode([delta])
        == (
            f'id: {SID}:2\nevent: delta\ndata: {{"text":"He said \\"hi\\"\\nthen\\\\left"}}\n\n'
        ).encode()
    )
    assert ENCODER.encode([done]) == (
        f'id: {SID}:3\nevent: done\ndata: {{"finish_reason":"stop"}}\n\n'.encode()
    )
    assert json.loads(delta.literal) == 'He said "hi"\nthen\\left'


def test_read_events_gives_a_bounded_batch_in_order() -> None:
    buffer = ReplayBuffer(capacity=64)
    for index in range(10):
        buffer.append_delta(str(index))

    batch = buffer.read_events(after_seq=2, max_events=4)

    assert [event.seq for event in batch] == [3, 4, 5, 6]
    assert [e.json()["text"] for e in parse_sse(ENCODER.encode(batch)).events] == [
        "2",
        "3",
        "4",
        "5",
    ]  # seq n holds str(n - 1)
    assert buffer.read_events(after_seq=10, max_events=4) == []


def test_trimming_keeps_at_least_capacity_recent_events_intact() -> None:
    buffer = ReplayBuffer(capacity=16)
    texts = [f"<{index}é>" for index in range(100)]
    for index, text in enumerate(texts):
        if index % 10 == 0:
            buffer.append_event("retry", {"attempt": index})
        buffer.append_delta(text)

    assert buffer.last_seq == 110
    assert buffer.last_seq - buffer.first_seq + 1 >= 16
    assert buffer.first_seq > 1
    events = parse_sse(native(buffer, buffer.first_seq - 1)).events
    assert [e.last_event_id for e in events] == [
        f"{SID}:{seq}" for seq in range(buffer.first_seq, 111)
    ]
    held_deltas = [e.json()["text"] for e in events if e.type == "delta"]
    assert held_deltas == texts[-len(held_deltas) :]
    with pytest.raises(IndexError):
        buffer.read_events(buffer.first_seq - 2, max_events=1)


class _SmallBuffer(ReplayBuffer):
    """The 4-byte offsets' limit, lowered to 40 bytes of text."""

    __slots__ = ()
    max_text_bytes = 40


def test_a_delta_past_the_offsets_limit_is_refused_and_the_buffer_stays_whole() -> None:
    buffer = _SmallBuffer(capacity=2)
    for index in range(5):
        buffer.append_delta(f"{index}12345")  # 8 bytes each, quotes included: 40 in all
        if index == 3:
            buffer.append_event("retry", {"attempt": 2})

    with pytest.raises(RagServiceError, match="40 bytes"):
        buffer.append_delta("x")  # trimmed bytes still count: offsets are absolute
    buffer.append_event("error", {"code": "internal_error"})

    assert buffer.last_seq == 7
    events = parse_sse(native(buffer, buffer.first_seq - 1, 10)).events
    assert events[-1].last_event_id == f"{SID}:7"
    assert [(e.type, e.data) for e in events[-2:]] == [
        ("delta", '{"text":"412345"}'),
        ("error", '{"code":"internal_error"}'),
    ]


def test_stream_ids_are_unguessable_and_fit_last_event_id() -> None:
    ids = {new_stream_id() for _ in range(1000)}

    assert len(ids) == 1000
    assert all(len(i) == 22 and is_well_formed_stream_id(i) and ":" not in i for i in ids)


@pytest.mark.parametrize(
    ("header", "seq"),
    [(None, 0), ("", 0), ("  ", 0), (f"{SID}:0", 0), (f"{SID}:17", 17), (f" {SID}:5 ", 5)],
)
def test_last_event_id_parsing(header: str | None, seq: int) -> None:
    assert parse_last_event_id(header, SID) == seq


@pytest.mark.parametrize(
    "header", [f"{'T' * 22}:1", f"{SID}", f"{SID}:x", f"{SID}:-1", f"{SID}:1.5", f"{SID}:١"]
)
def test_foreign_or_malformed_last_event_id_is_invalid(header: str) -> None:
    with pytest.raises(InvalidInput):
        parse_last_event_id(header, SID)


def test_retry_hint_is_spread_around_the_base() -> None:
    rng = random.Random(3)
    hints = [int(retry_field(1000, rng).split()[1]) for _ in range(500)]

    assert min(hints) >= 500
    assert max(hints) <= 1500
    assert len(set(hints)) > 100  # actually spread, not one value
    assert retry_field(0, rng) == b"retry: 0\n\n"


@pytest.mark.parametrize(
    "parts",
    [(b'{"a":1}',), (b'{"a":', b"[1,2]", b"}"), (b'{"a":', b"[1,", b"2]", b"}")],
    ids=["one", "three", "four"],
)
def test_an_event_in_parts_reads_as_the_joined_event_and_is_trimmed_like_any(
    parts: tuple[bytes, ...],
) -> None:
    buffer = ReplayBuffer(capacity=4)
    buffer.append_event_parts("meta", parts)
    buffer.append_delta("x")

    joined = b"".join(parts)
    assert buffer.read_events(0, 1) == [NamedEvent(1, "meta", joined)]
    assert native(buffer, 0).startswith(
        b"id: %s:1\nevent: meta\ndata: %s\n\n" % (SID.encode(), joined)
    )
    for _ in range(8):
        buffer.append_delta("y")
    assert buffer.first_seq > 1  # trimmed away with the deltas around it
    with pytest.raises(IndexError):
        buffer.read_events(0, 1)


def held_bytes(buffer: ReplayBuffer) -> int:
    """What ``nbytes`` should say, from the events read back (4 bytes per end offset)."""
    total = 0
    for event in buffer.read_events(buffer.first_seq - 1, 100_000):
        if isinstance(event, DeltaEvent):
            total += 4 + len(event.literal)
        else:
            assert isinstance(event, NamedEvent)
            total += 4 + len(event.name) + len(event.data)
    return total


def test_nbytes_counts_the_held_events_as_they_come_and_go() -> None:
    buffer = ReplayBuffer(capacity=16)
    assert buffer.nbytes == 0
    buffer.append_event_parts("meta", (b'{"stream_id":"x","sources":', b"[1,2,3]", b"}"))
    assert buffer.nbytes == held_bytes(buffer) == 4 + len("meta") + 35
    for index in range(40):  # past the capacity: the oldest events are trimmed in batches
        buffer.append_delta(f"tök\n{index}" * (index % 3))
        if index % 7 == 0:
            buffer.append_event("retry", {"attempt": index})
        assert buffer.nbytes == held_bytes(buffer)
    assert buffer.first_seq > 1  # the meta event and early deltas are gone, and not counted
    buffer.append_event("done", {"finish_reason": "stop"})
    assert buffer.nbytes == held_bytes(buffer)
