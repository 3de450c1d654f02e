"""A strict parser of an SSE byte stream, following the WHATWG EventSource parsing rules.

https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

- The stream is UTF-8; one leading BOM is skipped.
- Lines end in CRLF, LF or CR. A final line without an end is discarded, and so is an event
  whose block is not closed by a blank line (what a browser does at end of stream).
- ``:`` starts a comment. Otherwise the field name runs to the first colon; one space after the
  colon is dropped; a line without a colon is a field with an empty value.
- ``event`` sets the type, ``data`` appends value + LF, ``id`` sets the last-event-id buffer
  unless the value contains NUL (and it *persists* across events), ``retry`` sets the reconnection
  time only when the value is all ASCII digits. Other fields are ignored (recorded here).
- A blank line dispatches: the last event id is committed; an empty data buffer dispatches
  nothing; one trailing LF is removed from the data; the type defaults to ``message``.

Beyond the browser, it records the order of everything it saw (retry fields, comments, events,
ignored fields) and whether each event carried its own ``id`` line, so tests can be exact.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_LINE = re.compile(r"(.*?)(\r\n|\n|\r)", re.DOTALL)


@dataclass(frozen=True)
class SseEvent:
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
    last_event_id: str = ""
    discarded_tail: str = ""

    @property
    def events(self) -> list[SseEvent]:
        return [value for kind, value in self.items if kind == "event"]

    @property
    def comments(self) -> list[str]:
        return [value for kind, value in self.items if kind == "comment"]

    @property
    def ignored_fields(self) -> list[str]:
        return [value for kind, value in self.items if kind == "ignored_field"]


def parse_sse(raw: bytes) -> ParsedStream:
    text = raw.decode("utf-8")  # strict: invalid UTF-8 fails the test
    text = text.removeprefix("\ufeff")
    parsed = ParsedStream()
    state = _BlockState()
    position = 0
    for match in _LINE.finditer(text):
        if match.start() != position:
            break
        position = match.end()
        _process_line(match.group(1), parsed, state)
    parsed.discarded_tail = text[position:]
    return parsed


@dataclass
class _BlockState:
    data: str = ""
    event_type: str = ""
    id_buffer: str = ""
    own_id: bool = False


def _process_line(line: str, parsed: ParsedStream, state: _BlockState) -> None:
    if line == "":
        _dispatch(parsed, state)
        return
    if line.startswith(":"):
        parsed.items.append(("comment", line[1:].removeprefix(" ")))
        return
    name, colon, value = line.partition(":")
    if colon:
        value = value.removeprefix(" ")
    if name == "event":
        state.event_type = value
    elif name == "data":
        state.data += value + "\n"
    elif name == "id":
        if "\0" not in value:
            state.id_buffer = value
            state.own_id = True
    elif name == "retry":
        if value and value.isascii() and value.isdigit():
            parsed.reconnection_ms = int(value)
            parsed.items.append(("retry", int(value)))
    else:
        parsed.items.append(("ignored_field", name))


def _dispatch(parsed: ParsedStream, state: _BlockState) -> None:
    parsed.last_event_id = state.id_buffer
    own_id, state.own_id = state.own_id, False
    if state.data == "":
        state.event_type = ""
        return
    data = state.data.removesuffix("\n")
    event = SseEvent(state.event_type or "message", data, parsed.last_event_id, own_id)
    parsed.items.append(("event", event))
    state.data = ""
    state.event_type = ""
