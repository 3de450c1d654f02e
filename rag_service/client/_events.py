"""The typed events of an answer, and how the service's wire events become them.

The service's own events (``meta``, ``delta``, ``retry``, ``resumed``, ``done``, ``error``) come
from either wire format: the native SSE of ``/rag/stream`` or the OpenAI chunks of
``/v1/chat/completions``. Two more are the client's own notices: ``Connected`` (a response
started) and ``Reconnecting`` (the connection was lost or refused; the next try is scheduled).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rag_service.client._errors import ProtocolError

__all__ = [
    "Connected",
    "Delta",
    "Done",
    "Error",
    "Meta",
    "Reconnecting",
    "Resumed",
    "Retry",
    "ServiceEvent",
    "Source",
    "StreamEvent",
    "done_event",
    "error_event",
    "json_object",
    "meta_event",
    "native_event",
]


@dataclass(frozen=True)
class Source:
    """A catalog document the answer is grounded in, best first."""

    id: str
    title: str
    score: float


@dataclass(frozen=True)
class Meta:
    """First event: which stream this is and what context grounds the answer.

    ``state`` is ``fresh``, ``refreshed``, ``stale`` or ``fallback`` (docs/freshness.md).
    """

    stream_id: str
    context_id: str
    state: str | None = None
    age_s: float | None = None
    catalog_version: int | None = None
    sources: tuple[Source, ...] = ()


@dataclass(frozen=True)
class Delta:
    """The next piece of the answer; all of them joined are the answer, exactly once."""

    text: str


@dataclass(frozen=True)
class Retry:
    """The service is retrying its upstream model (``reason``); keep reading."""

    attempt: int
    max_attempts: int | None = None
    delay_ms: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Resumed:
    """The service has re-established its upstream model and the answer goes on."""

    attempt: int
    strategy: str | None = None


@dataclass(frozen=True)
class Done:
    """Last event of a finished answer. ``timings`` and ``attempts`` are absent from an
    OpenAI stream that was not resumed (its chunks do not carry them)."""

    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    attempts: int | None = None


@dataclass(frozen=True)
class Error:
    """Last event of a failed answer; text that arrived before it stays valid."""

    code: str
    message: str
    retryable: bool = False
    retry_after_s: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Connected:
    """A response started: the first one (``resumed`` false) or a resume of ``stream_id``;
    ``reconnects`` counts the tries before it."""

    resumed: bool
    stream_id: str | None = None
    reconnects: int = 0


@dataclass(frozen=True)
class Reconnecting:
    """The connection was lost (``status`` None) or refused with a retryable status; attempt
    ``attempt`` of ``max_attempts`` follows in ``delay_s`` seconds."""

    attempt: int
    max_attempts: int
    delay_s: float
    reason: str
    status: int | None = None


ServiceEvent = Meta | Delta | Retry | Resumed | Done | Error
StreamEvent = ServiceEvent | Connected | Reconnecting


def native_event(name: str, data: str) -> ServiceEvent | None:
    """The event for one native SSE event (``None``: a name this client does not know)."""
    payload = json_object(data)
    if name == "delta":
        text = payload.get("text")
        if not isinstance(text, str):
            raise ProtocolError("a delta event without text")
        return Delta(text)
    if name == "meta":
        context = payload.get("context")
        return meta_event(
            {"stream_id": payload.get("stream_id"), "context_id": payload.get("context_id")}
            | (context if isinstance(context, dict) else {})
        )
    if name == "retry":
        return Retry(
            attempt=_int(payload.get("attempt")) or 0,
            max_attempts=_int(payload.get("max_attempts")),
            delay_ms=_int(payload.get("delay_ms")),
            reason=_str(payload.get("reason")),
        )
    if name == "resumed":
        return Resumed(_int(payload.get("attempt")) or 0, _str(payload.get("strategy")))
    if name == "done":
        return done_event(payload)
    if name == "error":
        return error_event(payload)
    return None


def meta_event(fields: dict[str, Any]) -> Meta:
    """``Meta`` from the flat fields of a native ``meta`` (its ``context`` merged in) or of an
    OpenAI chunk's ``rag`` field, which carry the same names."""
    stream_id = fields.get("stream_id")
    if not isinstance(stream_id, str) or not stream_id:
        raise ProtocolError("the stream's first event names no stream id")
    sources = fields.get("sources")
    age_s = fields.get("age_s")
    return Meta(
        stream_id=stream_id,
        context_id=_str(fields.get("context_id")) or "",
        state=_str(fields.get("state")),
        age_s=float(age_s) if isinstance(age_s, int | float) else None,
        catalog_version=_int(fields.get("catalog_version")),
        sources=tuple(
            Source(str(s.get("id", "")), str(s.get("title", "")), float(s.get("score", 0.0)))
            for s in (sources if isinstance(sources, list) else [])
            if isinstance(s, dict)
        ),
    )


def done_event(payload: dict[str, Any]) -> Done:
    usage, timings = payload.get("usage"), payload.get("timings")
    return Done(
        finish_reason=_str(payload.get("finish_reason")),
        usage=usage if isinstance(usage, dict) else None,
        timings=timings if isinstance(timings, dict) else None,
        attempts=_int(payload.get("attempts")),
    )


def error_event(payload: dict[str, Any]) -> Error:
    retry_after_s, details = payload.get("retry_after_s"), payload.get("details")
    return Error(
        code=_str(payload.get("code")) or "unknown",
        message=_str(payload.get("message")) or "the stream failed",
        retryable=payload.get("retryable") is True,
        retry_after_s=float(retry_after_s) if isinstance(retry_after_s, int | float) else None,
        details=details if isinstance(details, dict) else {},
    )


def json_object(data: str) -> dict[str, Any]:
    """``data`` parsed as the JSON object every event carries (else a ``ProtocolError``)."""
    try:
        parsed = json.loads(data)
    except ValueError:
        raise ProtocolError(f"an event whose data is not JSON: {data[:80]!r}") from None
    if not isinstance(parsed, dict):
        raise ProtocolError(f"an event whose data is not a JSON object: {data[:80]!r}")
    return parsed


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
