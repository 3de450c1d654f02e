"""A stream's numbered events, kept compactly so that thousands of live streams stay cheap.

Most events of an answer are ``delta`` events of a few characters each. Storing each one as its
own encoded ``bytes`` object would cost ~100 bytes per token (object header, the repeated
``id:``/``event:`` lines), i.e. ~25 KB for a 256-token answer. Instead the buffer keeps:

- the JSON string literals of all delta texts, back to back, in one ``bytearray``;
- one 4-byte end offset per event in an ``array`` (an answer would need 4 GiB of text to
  overflow it; the buffer refuses such a delta with an error rather than wrap around);
- the few other events (``meta``, ``retry``, ``resumed``, ``done``, ``error``) as their name and
  data JSON in a small dict keyed by seq; an event given in parts (``append_event_parts``: the
  ``meta`` event, whose sources list is the same bytes for every stream of a context) is kept in
  parts and joined on each read.

Readers get the events themselves (``read_events``: ``DeltaEvent``/``NamedEvent``, see
``sse_format``), and each reader's encoder turns them into the bytes its client reads. Seqs count
from 1 without gaps. When more than ``capacity`` events are held, the oldest are dropped in
batches (amortised O(1)), so at least the last ``capacity`` events stay replayable.
"""

from __future__ import annotations

from array import array

from rag_service.domain import DeltaEvent, NamedEvent, SessionEvent
from rag_service.errors import RagServiceError
from rag_service.streaming.sse_format import json_string, to_json

_TRIM_SLACK_DIVISOR = 4  # drop in batches of capacity/4 so trimming is not O(n) per append


class ReplayBuffer:
    # The largest end offset an "I" array holds (a class attribute: tests lower it).
    max_text_bytes = 0xFFFF_FFFF

    __slots__ = (
        "_capacity",
        "_ends",
        "_first_seq",
        "_other_bytes",
        "_others",
        "_text",
        "_text_base",
    )

    def __init__(self, capacity: int, first_seq: int = 1) -> None:
        """``first_seq`` > 1: a copy of a stream whose earlier events are gone (``replicas``)."""
        self._capacity = capacity
        self._text = bytearray()
        self._text_base = 0  # absolute offset of _text[0] (bytes dropped from the front)
        self._ends = array("I")  # absolute end offset of each held event's delta literal
        # seq -> (name, data JSON or its parts) of each held event that is not a delta
        self._others: dict[int, tuple[str, bytes | tuple[bytes, ...]]] = {}
        self._other_bytes = 0  # the name and data bytes of the events in _others
        self._first_seq = first_seq

    @property
    def first_seq(self) -> int:
        """The oldest seq still held (``last_seq + 1`` when nothing was appended yet)."""
        return self._first_seq

    @property
    def last_seq(self) -> int:
        """The newest seq (0 before the first event)."""
        return self._first_seq + len(self._ends) - 1

    @property
    def nbytes(self) -> int:
        """Bytes of the held events: delta text, 4 per end offset, other events' name and JSON.

        A shared part (``append_event_parts``) counts in full in every buffer holding it, and
        Python's object headers and spare capacity do not count: a figure for bounds, O(1).
        """
        return len(self._text) + self._ends.itemsize * len(self._ends) + self._other_bytes

    def append_delta(self, text: str) -> int:
        return self.append_literal(json_string(text))

    def append_literal(self, literal: bytes) -> int:
        """A delta given as its text's JSON string literal (``json_string``)."""
        end = self._text_base + len(self._text) + len(literal)
        if end > self.max_text_bytes:
            raise RagServiceError(
                f"the answer's text outgrew the {self.max_text_bytes} bytes a stream can hold"
            )
        self._text += literal
        return self._append_end(end)

    def append_event(self, event: str, payload: dict[str, object]) -> int:
        data = to_json(payload)
        self._others[self.last_seq + 1] = (event, data)
        self._other_bytes += len(event) + len(data)
        return self._append_end(self._text_base + len(self._text))

    def append_event_parts(self, event: str, data: tuple[bytes, ...]) -> int:
        """An event whose JSON is ``b"".join(data)``, held in parts (shared parts stay shared)."""
        self._others[self.last_seq + 1] = (event, data)
        self._other_bytes += _event_bytes(event, data)
        return self._append_end(self._text_base + len(self._text))

    def read_events(self, after_seq: int, max_events: int) -> list[SessionEvent]:
        """Events ``after_seq+1 ..``, at most ``max_events`` (none when nothing is new).

        Events before ``first_seq`` are gone; asking for them is the caller's error (check
        ``first_seq`` first).
        """
        if after_seq + 1 < self._first_seq:
            raise IndexError(f"seq {after_seq + 1} is no longer held")
        last = self._first_seq + len(self._ends) - 1
        if after_seq >= last or max_events < 1:
            return []  # a live reader that has caught up: asked once per event it follows
        if after_seq + 1 == last or max_events == 1:
            return [self._held(after_seq + 1)]  # the next event alone: the live case
        stop = min(last, after_seq + max_events)
        return [self._held(seq) for seq in range(after_seq + 1, stop + 1)]

    def _held(self, seq: int) -> SessionEvent:
        other = self._others.get(seq)
        if other is not None:
            name, data = other
            return NamedEvent(seq, name, data if isinstance(data, bytes) else b"".join(data))
        index = seq - self._first_seq
        begin = self._ends[index - 1] if index > 0 else self._text_base
        end = self._ends[index]
        return DeltaEvent(seq, bytes(self._text[begin - self._text_base : end - self._text_base]))

    def _append_end(self, end: int) -> int:
        self._ends.append(end)
        if len(self._ends) >= self._capacity + max(1, self._capacity // _TRIM_SLACK_DIVISOR):
            self._trim(len(self._ends) - self._capacity)
        return self.last_seq

    def _trim(self, count: int) -> None:
        cut = self._ends[count - 1]
        del self._text[: cut - self._text_base]
        self._text_base = cut
        del self._ends[:count]
        self._first_seq += count
        for seq in [s for s in self._others if s < self._first_seq]:
            self._other_bytes -= _event_bytes(*self._others.pop(seq))


def _event_bytes(event: str, data: bytes | tuple[bytes, ...]) -> int:
    return len(event) + (len(data) if isinstance(data, bytes) else sum(map(len, data)))
