r"""The OpenAI chunk stream: an answer's SSE body pieces turned into ``CompletionChunk``\ s.

``ChunkReader`` takes each body piece as aiohttp hands it over (see ``wire``), runs it through our
SSE parser, interprets each event's JSON as a ``chat.completion.chunk`` and passes the chunk on
at once to the attempt's ``AnswerConsumer``. ``[DONE]`` ends the answer; an ``error`` event or an
``{"error": ...}`` payload raises ``UpstreamProtocolError`` with the upstream's message (the key
redacted), and so does malformed JSON in a complete event.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple, Protocol

from rag_service.errors import UpstreamProtocolError
from rag_service.sse_parser import SSEEvent, SSEParser
from rag_service.upstream.classify import message_of, redact, truncate

MAX_EVENT_CHARS = 1 << 20  # one chunk event is a few hundred bytes; this bounds a broken stream
DONE_MARKER = "[DONE]"


class CompletionChunk(NamedTuple):
    """What one OpenAI ``chat.completion.chunk`` tells us (a tuple: one is made per token)."""

    text: str
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None


class AnswerConsumer(Protocol):
    """Takes the chunks of one attempt, then hears that the answer is complete."""

    def __call__(self, chunk: CompletionChunk) -> None: ...

    def end(self) -> None:
        """The answer is complete ([DONE], or the body ended after a finish_reason); called
        before what follows [DONE] is drained. May raise (a continuation that fell short)."""
        ...


class ChunkReader:
    """Parses body pieces into chunks and passes each one on at once."""

    __slots__ = ("_consumer", "_parser", "_secret", "done", "finished")

    def __init__(self, consumer: AnswerConsumer, secret: str) -> None:
        self._consumer = consumer
        self._secret = secret
        self._parser = SSEParser()
        self.done = False  # [DONE] arrived
        self.finished = False  # a chunk with a finish_reason arrived

    def __call__(self, data: bytes) -> bool:
        """Take one body piece; True once ``[DONE]`` arrived (nothing more is wanted)."""
        for event in self._parser.feed(data):
            if event.data == DONE_MARKER or event.data.strip() == DONE_MARKER:
                self.done = True
                return True
            chunk = parse_chunk(event, self._secret)
            if chunk.finish_reason is not None:
                self.finished = True
            self._consumer(chunk)
        if self._parser.pending_chars > MAX_EVENT_CHARS:
            raise UpstreamProtocolError(
                f"upstream sent an event longer than {MAX_EVENT_CHARS} characters"
            )
        return False


def parse_chunk(event: SSEEvent, secret: str = "") -> CompletionChunk:
    """Interpret one SSE event of an OpenAI stream; upstream ``error`` payloads raise."""
    try:
        parsed: object = _json_value(event.data)
    except ValueError:
        if event.event == "error":
            raise _error_payload(event.data, secret) from None
        raise UpstreamProtocolError(
            f"upstream sent malformed JSON in a data line: {truncate(event.data, 120)!r}"
        ) from None
    if event.event == "error" or (isinstance(parsed, dict) and "error" in parsed):
        raise _error_payload(message_of(parsed) or event.data, secret)
    if not isinstance(parsed, dict):
        raise UpstreamProtocolError("upstream sent a data line that is not a JSON object")
    return _chunk_of(parsed)


def _json_value(text: str, _whole: Any = json.JSONDecoder().raw_decode) -> object:
    """``json.loads(text)`` without its whitespace matching and two Python calls per token when
    the JSON fills ``text`` exactly (any OpenAI chunk); anything else, errors too, is loads'."""
    try:
        value, end = _whole(text)
    except ValueError:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def _chunk_of(parsed: dict[str, Any]) -> CompletionChunk:
    text = ""
    finish_reason = None
    choices = parsed.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        delta = choices[0].get("delta")
        if isinstance(delta, dict) and isinstance(delta.get("content"), str):
            text = delta["content"]
        reason = choices[0].get("finish_reason")
        finish_reason = reason if isinstance(reason, str) else None
    usage = parsed.get("usage")
    return CompletionChunk(text, finish_reason, usage if isinstance(usage, dict) else None)


def _error_payload(message: str, secret: str) -> UpstreamProtocolError:
    return UpstreamProtocolError(
        f"upstream sent an error in the stream: {redact(truncate(message), secret)}"
    )
