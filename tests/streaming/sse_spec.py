"""The tests' view of an SSE body, read by the project's one parser (``rag_service.sse_parser``).

``parse_sse(body)`` feeds the whole body to an ``SSEParser`` with an observer attached, and
records, in stream order, everything the parser reported: ``retry`` fields, comments, events and
fields it ignored. Each event also says whether its block had its own ``id`` line, so tests can
be exact about ids. Nothing here interprets a line: the rules (line ends, BOM, field names, the
single space, NUL ids, digit-only retry, undispatched tails) are the parser's, and its
conformance to the WHATWG spec is tested in ``tests/test_sse_parser.py``.

The body must be valid UTF-8 (the parser would replace invalid bytes; a test wants them to fail).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

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
    recorder = _Recorder()
    parser = SSEParser(observer=recorder)
    parser.feed(body)  # the events come to the recorder too, in order with the rest
    recorder.parsed.unterminated = parser.has_pending_data
    return recorder.parsed


class _Recorder:
    """An ``SSEObserver`` that writes down what the parser reports."""

    def __init__(self) -> None:
        self.parsed = ParsedStream()
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
