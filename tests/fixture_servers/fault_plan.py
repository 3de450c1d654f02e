"""What the fault-injecting upstream does per request: faults, answer text and event encoding.

Answers are deterministic functions of the request's messages (a replayed request streams the
same text); a request ending in an assistant message marked ``prefix`` (DeepSeek) or sent with
``continue_final_message`` (vLLM) streams the rest of that answer. See ``fault_upstream``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Multi-byte UTF-8 on purpose: byte-level chunking then splits characters.
VOCABULARY = (
    "boots", "size", "return", "policy", "Grüße", "naïve", "€42", "日本", "ok😀", "ship",
    "order", "waterproof", "leather", "refund", "café", "days", "free", "exchange",
)  # fmt: skip


@dataclass(frozen=True)
class AnswerStyle:
    """How normal answers are shaped and paced."""

    words: int = 12
    words_per_chunk: int = 1
    line_ending: str = "\n"  # "\n", "\r\n" or "\r"
    comments: bool = False  # a ": keep-alive" comment line before every event
    multiline_data: bool = False  # JSON spread over several `data:` lines
    event_ids: bool = False
    bom: bool = False
    write_size: int | None = None  # split every write into pieces of at most this many bytes
    chunked: bool = True  # False: the body ends when the connection closes
    first_token_delay_s: float = 0.0
    inter_token_delay_s: float = 0.0
    # The chunked terminator always follows `data: [DONE]` in a write of its own; this long after
    # it (over TLS a real server's terminator arrives in a read of its own).
    terminator_delay_s: float = 0.0
    variant: int = 0  # another value: a different answer to the same request (a sampling model)


@dataclass(frozen=True)
class Complete:
    """A normal, complete answer (``style`` overrides the server's)."""

    style: AnswerStyle | None = None


@dataclass(frozen=True)
class Drop:
    """Read the request, then close the connection without a byte (``reset``: send RST)."""

    reset: bool = True


@dataclass(frozen=True)
class Status:
    """An error answer with an OpenAI error JSON body (or ``body``) and extra ``headers``."""

    status: int
    message: str = "injected failure"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    delay_s: float = 0.0  # wait this long before answering


@dataclass(frozen=True)
class WrongContentType:
    """A 200 that is not an event stream (a captive portal, a misrouted proxy)."""

    content_type: str = "text/html; charset=utf-8"
    body: bytes = b"<html><body>Hello from a proxy</body></html>"


@dataclass(frozen=True)
class CutAfter:
    """Close the connection after ``events`` text events (``mid_line``: inside the next one)."""

    events: int
    mid_line: bool = False


@dataclass(frozen=True)
class Stall:
    """Send nothing for ``seconds`` after ``after_events`` text events, then go on."""

    after_events: int
    seconds: float


@dataclass(frozen=True)
class MalformedJson:
    """A complete event whose data is not JSON, after ``after_events`` text events."""

    after_events: int = 0


@dataclass(frozen=True)
class TruncatedJson:
    """Half a data line (no line end), then the connection closes."""

    after_events: int = 0


@dataclass(frozen=True)
class ErrorEvent:
    """An in-stream error payload; ``named``: as ``event: error``, else only ``{"error"}``."""

    after_events: int = 0
    message: str = "the model is overloaded"
    named: bool = True


Fault = (
    Complete | Drop | Status | WrongContentType | CutAfter | Stall | MalformedJson | TruncatedJson
    | ErrorEvent
)  # fmt: skip
MidStreamFault = CutAfter | Stall | MalformedJson | TruncatedJson | ErrorEvent
Plan = Sequence[Fault] | Callable[[int, "dict[str, Any] | None"], Fault]


def answer_pieces(messages: Sequence[Mapping[str, Any]], style: AnswerStyle) -> list[str]:
    """The text chunks of the answer to ``messages``: a pure function of roles and contents."""
    key = json.dumps(
        [style.variant, *([m.get("role"), m.get("content")] for m in messages)], ensure_ascii=False
    )
    rng = random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))
    tokens = [(" " if i else "") + rng.choice(VOCABULARY) for i in range(style.words)]
    step = max(1, style.words_per_chunk)
    return ["".join(tokens[i : i + step]) for i in range(0, len(tokens), step)]


def answer_text(messages: Sequence[Mapping[str, Any]], style: AnswerStyle | None = None) -> str:
    return "".join(answer_pieces(messages, style or AnswerStyle()))


def continuation_pieces(body: Mapping[str, Any], style: AnswerStyle) -> list[str]:
    """The pieces to stream for ``body``, honouring an assistant prefix to continue."""
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    last = messages[-1] if messages else None
    continuing = (
        isinstance(last, dict)
        and last.get("role") == "assistant"
        and bool(last.get("prefix") or body.get("continue_final_message"))
    )
    if not continuing or not isinstance(last, dict):
        return answer_pieces(messages, style)
    prefix = str(last.get("content") or "")
    pieces = answer_pieces(messages[:-1], style)
    if not "".join(pieces).startswith(prefix):
        return pieces
    rest, skip = [], len(prefix)
    for piece in pieces:
        if skip >= len(piece):
            skip -= len(piece)
            continue
        rest.append(piece[skip:])
        skip = 0
    return rest


def encode_event(data: str, style: AnswerStyle, *, name: str = "", event_id: str = "") -> bytes:
    lines = [": keep-alive"] if style.comments else []
    if name:
        lines.append(f"event: {name}")
    if event_id:
        lines.append(f"id: {event_id}")
    lines += [f"data: {line}" for line in data.split("\n")]
    ending = style.line_ending
    return (ending.join(lines) + ending + ending).encode()


def _chunk_json(
    content: str | None, finish_reason: str | None = None, **extra: Any
) -> dict[str, Any]:
    delta: dict[str, Any] = {} if content is None else {"content": content}
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    return {"id": "chatcmpl-fault", "object": "chat.completion.chunk", "choices": [choice], **extra}


class AnswerEvents:
    """Encodes the events of one answer in a style."""

    def __init__(self, style: AnswerStyle, body: Mapping[str, Any]) -> None:
        self._style = style
        self._sequence = 0
        options = body.get("stream_options")
        self._usage = isinstance(options, dict) and bool(options.get("include_usage"))

    def opening(self) -> bytes:
        role = _chunk_json(None)
        role["choices"][0]["delta"] = {"role": "assistant", "content": ""}
        return ("\ufeff".encode() if self._style.bom else b"") + self._encode(role)

    def text(self, piece: str) -> bytes:
        return self._encode(_chunk_json(piece))

    def closing(self, pieces: int) -> bytes:
        closing = self._encode(_chunk_json(None, "stop"))
        if self._usage:
            usage = {"prompt_tokens": 10, "completion_tokens": pieces, "total_tokens": 10 + pieces}
            closing += self._encode({"id": "chatcmpl-fault", "choices": [], "usage": usage})
        return closing + self.raw("[DONE]")

    def raw(self, data: str, *, name: str = "") -> bytes:
        return encode_event(data, self._style, name=name)

    def _encode(self, payload: dict[str, Any]) -> bytes:
        self._sequence += 1
        indent = 1 if self._style.multiline_data else None
        data = json.dumps(payload, ensure_ascii=False, indent=indent)
        event_id = str(self._sequence) if self._style.event_ids else ""
        return encode_event(data, self._style, event_id=event_id)


def fault_position(fault: MidStreamFault | None) -> int:
    if fault is None:
        return -1
    return fault.events if isinstance(fault, CutAfter) else fault.after_events


def error_json(message: str, status: int) -> dict[str, Any]:
    kind = "invalid_request_error" if 400 <= status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "code": status}}
