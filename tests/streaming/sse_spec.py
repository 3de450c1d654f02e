"""The tests' view of an SSE body, read by the project's one parser (``rag_service.sse_parser``).

``parse_sse(body)`` feeds the whole body to an ``SSEParser`` with an observer attached, and
records, in stream order, everything the parser reported: ``retry`` fields, comments, events and
fields it ignored. Each event also says whether its block had its own ``id`` line, so tests can
be exact about ids. ``SseReader`` does the same for a body read piece by piece, and
``sse_events`` / ``iter_sse_events`` yield the events of a streamed httpx response as they come.
Nothing here interprets a line: the rules (line ends, BOM, field names, the single space, NUL
ids, digit-only retry, undispatched tails) are the parser's, and its conformance to the WHATWG
spec is tested in ``tests/test_sse_parser.py``.

``parse_sse`` wants valid UTF-8 (the parser would replace invalid bytes; a test wants them to
fail).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from rag_service.sse_parser import SSEEvent, SSEParser


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event as tests compare it: ``last_event_id`` is ``""`` before any id."""

    type: str
    data: str
    last_event_id: str
    own_id: bool  # the event's block had its own `id:` line

    def json(self) -> dict[str, Any]:
        value = json.loads(self.data)
        assert isinstance(value, dict), f"data is not a JSON object: {self.data!r}"
        return value


@dataclass
class ParsedStream:
    items: list[tuple[str, Any]] = field(default_factory=list)  # ("retry"|"comment"|"event"|...)
    reconnection_ms: int | None = None
    last_event_id: str = ""  # as of the last blank line (an `id` takes effect at its block's end)
    # Bytes of an event that no blank line closed: a browser drops them at the end of the stream.
    unterminated: bool = False
    # Blank lines that ended a block without `data` (or an extra blank line): valid SSE that
    # dispatches nothing, but the OpenAI SDKs' decoder turns each into an event it cannot parse.
    blocks_without_data: int = 0

    @property
    def events(self) -> list[SseEvent]:
        return [value for kind, value in self.items if kind == "event"]

    @property
    def comments(self) -> list[str]:
        return [value for kind, value in self.items if kind == "comment"]

    @property
    def ignored_fields(self) -> list[str]:
        return [value for kind, value in self.items if kind == "ignored_field"]


def parse_sse(body: bytes) -> ParsedStream:
    body.decode("utf-8")  # strict: invalid UTF-8 fails the test
    reader = SseReader()
    reader.feed(body)
    return reader.parsed


class SseReader:
    """``parse_sse`` for a body read piece by piece."""

    def __init__(self) -> None:
        self._recorder = _Recorder()
        self._parser = SSEParser(observer=self._recorder)

    def feed(self, piece: bytes) -> list[SseEvent]:
        """The events ``piece`` completed (the events come to the recorder, in order)."""
        self._parser.feed(piece)
        new, self._recorder.new_events = self._recorder.new_events, []
        return new

    @property
    def parsed(self) -> ParsedStream:
        """All that was read so far."""
        self._recorder.parsed.unterminated = self._parser.has_pending_data
        return self._recorder.parsed


async def sse_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    """The events of a streamed response (``client.stream(...)``), each as soon as it is whole."""
    reader = SseReader()
    async for piece in response.aiter_bytes():
        for event in reader.feed(piece):
            yield event


def iter_sse_events(response: httpx.Response) -> Iterator[SseEvent]:
    """``sse_events`` for a synchronous streamed response (``httpx.stream(...)``)."""
    reader = SseReader()
    for piece in response.iter_bytes():
        yield from reader.feed(piece)


class _Recorder:
    """An ``SSEObserver`` that writes down what the parser reports."""

    def __init__(self) -> None:
        self.parsed = ParsedStream()
        self.new_events: list[SseEvent] = []  # since the reader last took them
        self._block_id: str | None = None

    def on_comment(self, text: str) -> None:
        self.parsed.items.append(("comment", text))

    def on_id(self, value: str) -> None:
        self._block_id = value

    def on_retry(self, retry_ms: int) -> None:
        self.parsed.reconnection_ms = retry_ms
        self.parsed.items.append(("retry", retry_ms))

    def on_unknown_field(self, name: str, value: str) -> None:
        self.parsed.items.append(("ignored_field", name))

    def on_block_end(self, event: SSEEvent | None) -> None:
        block_id, self._block_id = self._block_id, None
        if block_id is not None:
            self.parsed.last_event_id = block_id
        if event is None:
            self.parsed.blocks_without_data += 1
        else:
            shown = SseEvent(event.event, event.data, event.id or "", block_id is not None)
            self.parsed.items.append(("event", shown))
            self.new_events.append(shown)
