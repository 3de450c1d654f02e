"""An incremental Server-Sent Events parser: bytes in, events out.

Follows the WHATWG event-stream rules: CR, LF and CRLF all end a line (also when a CRLF is split
across two chunks), a leading BOM is dropped, ``:`` lines are comments, a single space after the
field colon is stripped, ``data`` lines join with ``\\n``, and a blank line dispatches the event.
UTF-8 is decoded incrementally, so a chunk may end inside a multi-byte character. An event that
is not terminated by a blank line when the stream ends is never dispatched: for a chat stream that
is a cut, not an event.

**The one SSE parser of the Python code** (the browser page has its own, in JavaScript): the
upstream client reads the LLM's stream with it, ``rag_service.client`` the service's own, and the
tests read every stream they check through it (``tests/streaming/sse_spec.py``: comments,
``retry`` and unknown fields come from an :class:`SSEObserver`). Its conformance to the spec is
tested once, byte by byte, in ``tests/test_sse_parser.py``. Do not write another: when a caller
needs to see more of a stream, extend this parser's public API. It lives outside the upstream
and client packages so that the client library does not load the service's upstream stack
(aiohttp, settings) to parse a stream.
"""

from __future__ import annotations

import codecs
from typing import NamedTuple, Protocol

__all__ = ["SSEEvent", "SSEObserver", "SSEParser"]

_BOM = "\ufeff"


class SSEEvent(NamedTuple):
    """One dispatched event; ``event`` is ``"message"`` unless the stream named it.

    A named tuple rather than a frozen dataclass: one is built per streamed token, and a tuple
    is several times cheaper to create.
    """

    data: str
    event: str = "message"
    id: str | None = None
    retry_ms: int | None = None


class SSEObserver(Protocol):
    """Hears, in stream order, what a parser reads besides the events :meth:`SSEParser.feed`
    returns: for a caller that checks a stream exactly (the tests). The service's own readers
    attach none; on their per-token path it costs one local ``is None`` per id and blank line."""

    def on_comment(self, text: str) -> None:
        """A comment line: ``text`` follows the colon, one leading space dropped as for a field."""

    def on_id(self, value: str) -> None:
        """An ``id`` field that set the last event id (one with a NUL is ignored, unreported)."""

    def on_retry(self, retry_ms: int) -> None:
        """A ``retry`` field that set the reconnection time (one that is not all ASCII digits
        is ignored, unreported)."""

    def on_unknown_field(self, name: str, value: str) -> None:
        """A field the spec does not know, which the parser ignores."""

    def on_block_end(self, event: SSEEvent | None) -> None:
        """A blank line ended a block; ``event`` is what it dispatched (None: no ``data``)."""


class SSEParser:
    """Feed raw bytes with :meth:`feed`; it returns every event completed by them.

    ``observer`` hears everything else the stream says (:class:`SSEObserver`); with one
    attached every chunk takes the general path, so the observer misses nothing.
    """

    def __init__(self, observer: SSEObserver | None = None) -> None:
        self._observer = observer
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._decoder_holds_bytes = False  # the start of a character cut off at a chunk's end
        self._at_stream_start = True
        self._skip_lf = False  # the previous chunk ended with CR: a leading LF belongs to it
        self._partial_line = ""
        self._data_lines: list[str] = []
        self._data_chars = 0  # the length of _data_lines, kept so that bounding it is O(1)
        self._event_type = ""
        self._last_id: str | None = None
        self._retry_ms: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        whole = self._data_events(chunk)
        if whole is not None:
            return whole
        text = self._decode(chunk)
        if self._at_stream_start and text:
            self._at_stream_start = False
            if text.startswith(_BOM):
                text = text[1:]
        return self._process_lines(self._complete_lines(text))

    @property
    def pending_chars(self) -> int:
        """Characters held for an event not yet dispatched (callers bound it)."""
        return len(self._partial_line) + self._data_chars

    def _data_events(self, chunk: bytes) -> list[SSEEvent] | None:
        """The events when ``chunk`` is only whole ``data: ...`` lines, each with its blank line,
        and nothing is pending: what an OpenAI stream sends, one token per event, and several
        at once when reads fall behind. Parsing them line by line would give the same events at
        several times the cost; anything else (None) takes the general path."""
        if (
            chunk[:6] != b"data: "
            or chunk[-2:] != b"\n\n"
            or b"\r" in chunk
            or self._at_stream_start
            or self._partial_line
            or self._data_lines
            or self._event_type
            or self._skip_lf
            or self._decoder_holds_bytes
            or self._observer is not None
        ):
            return None
        try:
            text = chunk[:-2].decode()
        except UnicodeDecodeError:
            return None  # the decoder's replacement rules apply: the general path
        last_id, retry_ms = self._last_id, self._retry_ms
        if "\n" not in text:  # one event: the usual case
            return [SSEEvent(text[6:], "message", last_id, retry_ms)]
        events = []
        for block in text.split("\n\n"):
            if block[:6] != "data: " or "\n" in block:
                return None
            events.append(SSEEvent(block[6:], "message", last_id, retry_ms))
        return events

    def _decode(self, chunk: bytes) -> str:
        """UTF-8 as the incremental decoder would, without its Python layer when it holds no
        partial character and ``chunk`` decodes whole (the usual case)."""
        if not self._decoder_holds_bytes:
            try:
                return chunk.decode()
            except UnicodeDecodeError:
                pass  # a character cut at the end, or invalid bytes: the decoder's rules apply
        text = self._decoder.decode(chunk)
        self._decoder_holds_bytes = bool(self._decoder.getstate()[0])
        return text

    @property
    def has_pending_data(self) -> bool:
        """True when bytes of an event that was not yet dispatched have been seen."""
        return bool(self._partial_line or self._data_lines)

    def _complete_lines(self, text: str) -> list[str]:
        if self._skip_lf and text:
            if text.startswith("\n"):
                text = text[1:]
            self._skip_lf = False
        buffer = self._partial_line + text
        if "\r" not in buffer:  # the common case: LF-only streams
            *lines, self._partial_line = buffer.split("\n")
            return lines
        lines = []
        start = 0
        length = len(buffer)
        while True:
            cr = buffer.find("\r", start)
            lf = buffer.find("\n", start)
            if cr == -1 and lf == -1:
                break
            if cr == -1 or (lf != -1 and lf < cr):
                lines.append(buffer[start:lf])
                start = lf + 1
                continue
            lines.append(buffer[start:cr])
            if cr + 1 < length:
                start = cr + 2 if buffer[cr + 1] == "\n" else cr + 1
            else:
                start = cr + 1
                self._skip_lf = True  # the matching LF, if any, arrives with the next chunk
        self._partial_line = buffer[start:]
        return lines

    def _process_lines(self, lines: list[str]) -> list[SSEEvent]:
        # One loop, not a call per line: a token of the service's own stream is four lines. The
        # observer is looked at only on the lines a token stream has few of (one id and one
        # blank line per event), never on a data line.
        events: list[SSEEvent] = []
        observer = self._observer
        for line in lines:
            if line == "":
                event = self._dispatch()
                if event is not None:
                    events.append(event)
                if observer is not None:
                    observer.on_block_end(event)
                continue
            if line.startswith(":"):
                if observer is not None:
                    observer.on_comment(line[2:] if line.startswith(": ") else line[1:])
                continue
            name, colon, value = line.partition(":")
            if colon and value.startswith(" "):
                value = value[1:]
            if name == "data":
                self._data_lines.append(value)
                self._data_chars += len(value)
            elif name == "event":
                self._event_type = value
            elif name == "id":
                if "\0" not in value:
                    self._last_id = value
                    if observer is not None:
                        observer.on_id(value)
            elif name == "retry":
                if value.isascii() and value.isdigit():
                    self._retry_ms = int(value)
                    if observer is not None:
                        observer.on_retry(self._retry_ms)
            elif observer is not None:
                observer.on_unknown_field(name, value)
        return events

    def _dispatch(self) -> SSEEvent | None:
        data_lines, self._data_lines = self._data_lines, []
        self._data_chars = 0
        event_type, self._event_type = self._event_type, ""
        if not data_lines:
            return None
        data = data_lines[0] if len(data_lines) == 1 else "\n".join(data_lines)
        return SSEEvent(data, event_type or "message", self._last_id, self._retry_ms)
