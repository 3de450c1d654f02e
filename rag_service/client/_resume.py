"""The resumption logic of one answer, free of I/O: which request to send next, what the bytes
of a response mean, and whether (and when) to try again. The async and the sync client drive
it with their own HTTP calls and sleeps, so both behave exactly alike.

Exactly-once text rests on the event ids ``<stream_id>:<seq>``: every event handed to the
reader moves the last seen seq (one read may carry several events, and the reader may stop
after any of them: ``feed`` parses, ``deliver`` counts), a resume asks for the events after it
(``Last-Event-ID``), and an event at or below it is never delivered twice. On the native stream seqs have no gaps, so a gap is a
``ProtocolError``. An OpenAI stream (``/v1/chat/completions``) is resumed in the native format;
its final chunks (finish, usage, ``[DONE]``) share the seq of the ``done`` event, so that seq
counts as seen only once ``[DONE]`` arrived: a stream cut between them resumes with the ``done``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import httpx

from rag_service.client._errors import (
    ConnectionFailed,
    DeadlineExceeded,
    ProtocolError,
    RequestRefused,
    refusal,
)
from rag_service.client._events import (
    Connected,
    Delta,
    Done,
    Error,
    Meta,
    Reconnecting,
    ServiceEvent,
    error_event,
    json_object,
    meta_event,
    native_event,
)
from rag_service.client._policy import RetryPolicy
from rag_service.sse_parser import SSEParser

__all__ = ["STREAM_PATH", "NextRequest", "Opening", "Parsed", "Resumption"]

STREAM_PATH = "/rag/stream"
_EVENT_STREAM = "text/event-stream"


@dataclass(frozen=True)
class Opening:
    """The request that starts the answer; ``openai``: its response is OpenAI chunks."""

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    openai: bool = False
    stream_id: str | None = None  # resuming a known stream: no new answer is started
    after_seq: int = 0


@dataclass(frozen=True)
class NextRequest:
    method: str
    path: str
    params: Mapping[str, str]
    json: Any
    headers: dict[str, str]
    timeout: httpx.Timeout

    def build(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        """This request on ``http`` (its base URL and default headers merged in)."""
        return http.build_request(
            self.method,
            self.path,
            params=self.params,
            json=self.json,
            headers=self.headers,
            timeout=self.timeout,
        )


class Parsed(NamedTuple):
    """An event read from a response, and its seq; it counts as seen once delivered."""

    seq: int | None
    event: ServiceEvent


class Resumption:
    """One answer's progress; see the module docstring."""

    def __init__(
        self,
        opening: Opening,
        policy: RetryPolicy,
        rng: random.Random,
        *,
        headers: Mapping[str, str],
        now: float,
    ) -> None:
        self._opening = opening
        self._policy = policy
        self._rng = rng
        self._headers = dict(headers)
        self._deadline = now + policy.deadline_s
        self.stream_id = opening.stream_id
        self.last_seq = opening.after_seq
        self.attempt = 0  # tries since the last response that brought news
        self.reconnects = 0  # in all
        self.retry_hint_s = 0.0
        self.meta: Meta | None = None
        self.done: Done | None = None
        self.error: Error | None = None
        self._pieces: list[str] = []
        self._parser = SSEParser()
        self._openai_response = False
        self._final: dict[str, Any] = {}  # an OpenAI stream's finish reason and usage
        # How far the current response has been parsed, ahead of what was delivered: the
        # events of one read are parsed at once, and the reader may stop after any of them.
        self._parsed_seq = self.last_seq
        self._parsed_stream_id = self.stream_id
        self._parsed_end = False
        self._progressed = False

    # -- what the caller reads ----------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.done is not None or self.error is not None

    @property
    def text(self) -> str:
        return "".join(self._pieces)

    @property
    def last_event_id(self) -> str | None:
        return None if self.stream_id is None else f"{self.stream_id}:{self.last_seq}"

    # -- requests -----------------------------------------------------------------------------

    def next_request(self, now: float) -> NextRequest:
        """The request to send now: the opening one until a stream id is known, then resumes."""
        self._check_deadline(now)
        headers = {"Accept": _EVENT_STREAM, **self._headers}
        self._parser = SSEParser()
        self._progressed = False
        self._parsed_seq, self._parsed_stream_id = self.last_seq, self.stream_id
        self._parsed_end = self.finished
        timeout = self._policy.timeout(self._deadline - now)
        if self.stream_id is None:
            opening = self._opening
            self._openai_response = opening.openai
            return NextRequest(
                opening.method, opening.path, opening.params, opening.json, headers, timeout
            )
        self._openai_response = False
        headers["Last-Event-ID"] = f"{self.stream_id}:{self.last_seq}"
        return NextRequest("GET", f"{STREAM_PATH}/{self.stream_id}", {}, None, headers, timeout)

    def connected(self, response: httpx.Response) -> Connected:
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith(_EVENT_STREAM):
            raise ProtocolError(f"the answer is not an event stream but {content_type!r}")
        return Connected(self.stream_id is not None, self.stream_id, self.reconnects)

    def refused(
        self, status: int, body: bytes, headers: Mapping[str, str], now: float
    ) -> Reconnecting:
        """A non-200 answer: the notice of the next try, or the refusal raised."""
        error = refusal(status, body, headers.get("retry-after"))
        if not (status in (429,) or status >= 500) or not error.retryable:
            raise error
        floor = max(self.retry_hint_s, error.retry_after_s or 0.0)
        return self._schedule(f"{status} {error.code}", now, floor, status=status, cause=error)

    def lost(self, reason: str, now: float) -> Reconnecting:
        """The connection failed or ended early: the notice of the next try, or raise."""
        return self._schedule(reason, now, self.retry_hint_s)

    def ended(self, now: float) -> Reconnecting | None:
        """The response ended: ``None`` if the answer is whole, else the notice of the next try."""
        return None if self.finished else self.lost("the connection closed mid-answer", now)

    def failed(self, error: httpx.TransportError, now: float) -> Reconnecting | None:
        """The connection or a read failed: the notice of the next try, or ``None`` if the answer
        is whole already (the failure hit only the framing after its last event)."""
        if self.finished:
            return None
        kind = type(error).__name__
        return self.lost(f"{kind}: {error}" if str(error) else kind, now)

    def _schedule(
        self,
        reason: str,
        now: float,
        floor_s: float,
        *,
        status: int | None = None,
        cause: RequestRefused | None = None,
    ) -> Reconnecting:
        self._check_deadline(now)
        if self._progressed:
            self.attempt = 0
        self.attempt += 1
        if self.attempt > self._policy.max_attempts:
            if cause is not None:
                raise cause
            where = "reach the service" if self.stream_id is None else "resume the stream"
            raise ConnectionFailed(
                f"could not {where} after {self._policy.max_attempts} retries: {reason}",
                attempts=self._policy.max_attempts + 1,
            )
        delay = self._policy.delay_s(self.attempt, floor_s, self._rng)
        if now + delay > self._deadline:
            raise DeadlineExceeded(
                f"the next try ({reason}) would come after the deadline of "
                f"{self._policy.deadline_s:g} s"
            )
        self.reconnects += 1
        return Reconnecting(self.attempt, self._policy.max_attempts, delay, reason, status)

    def check_deadline(self, now: float) -> None:
        self._check_deadline(now)

    def _check_deadline(self, now: float) -> None:
        if now >= self._deadline:
            raise DeadlineExceeded(
                f"no answer within the deadline of {self._policy.deadline_s:g} s"
                + (f" (stream {self.stream_id})" if self.stream_id else "")
            )

    # -- response bytes -----------------------------------------------------------------------

    def feed(self, chunk: bytes) -> list[Parsed]:
        """The new events in ``chunk`` (none after the last one); each counts as seen only
        once passed to ``deliver``."""
        parsed: list[Parsed] = []
        for raw in self._parser.feed(chunk):
            if self._parsed_end:
                break
            if raw.retry_ms is not None:
                self.retry_hint_s = raw.retry_ms / 1000
            item = (
                self._openai_event(raw.data, raw.id)
                if self._openai_response
                else self._native_event(raw.event, raw.data, raw.id)
            )
            if item is not None:
                parsed.append(item)
                if isinstance(item.event, Meta):
                    self._parsed_stream_id = item.event.stream_id
                self._parsed_end = isinstance(item.event, Done | Error)
        return parsed

    def received(self, chunk: bytes, now: float) -> Iterator[ServiceEvent]:
        """The events of the response's next ``chunk`` (arrived at ``now``, within the deadline
        or ``DeadlineExceeded``), each delivered as the reader takes it: a reader that stops
        early leaves the rest unseen, to be sent again by a resume."""
        self._check_deadline(now)
        for item in self.feed(chunk):
            yield self.deliver(item)

    def deliver(self, item: Parsed) -> ServiceEvent:
        """``item``'s event, now handed to the reader: it counts as seen."""
        if item.seq is not None:
            self.last_seq = item.seq
        return self._record(item.event)

    def _native_event(self, name: str, data: str, event_id: str | None) -> Parsed | None:
        seq = self._seq_of(event_id)
        if seq is not None:
            if seq <= self._parsed_seq:
                return None  # already delivered
            if seq != self._parsed_seq + 1 and self._parsed_stream_id is not None:
                raise ProtocolError(f"event {seq} follows {self._parsed_seq}: events are missing")
            self._parsed_seq = seq
        event = native_event(name, data)
        return None if event is None else Parsed(seq, event)

    def _openai_event(self, data: str, event_id: str | None) -> Parsed | None:
        seq = self._seq_of(event_id)
        if data == "[DONE]":
            return Parsed(seq, Done(self._final.get("finish_reason"), self._final.get("usage")))
        chunk = json_object(data)
        if isinstance(chunk.get("error"), dict):
            return Parsed(seq, error_event(chunk["error"]))
        choices = chunk.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else {}
        if not choices or (isinstance(choice, dict) and choice.get("finish_reason")):
            # A final chunk: its seq is the done event's, seen only with [DONE].
            if isinstance(choice, dict) and choice.get("finish_reason"):
                self._final["finish_reason"] = choice["finish_reason"]
            if isinstance(chunk.get("usage"), dict):
                self._final["usage"] = chunk["usage"]
            return None
        if isinstance(chunk.get("rag"), dict):
            return Parsed(seq, meta_event(chunk["rag"]))
        delta = choice.get("delta") if isinstance(choice, dict) else None
        content = delta.get("content") if isinstance(delta, dict) else None
        return Parsed(seq, Delta(content)) if isinstance(content, str) and content else None

    def _seq_of(self, event_id: str | None) -> int | None:
        if not event_id:
            return None
        prefix, _, seq_text = event_id.rpartition(":")
        if not seq_text.isdigit():
            raise ProtocolError(f"an event id that is not <stream_id>:<seq>: {event_id!r}")
        if self._parsed_stream_id is not None and prefix != self._parsed_stream_id:
            raise ProtocolError(f"an event of another stream: {event_id!r}")
        return int(seq_text)

    def _record(self, event: ServiceEvent) -> ServiceEvent:
        self._progressed = True
        if isinstance(event, Delta):
            self._pieces.append(event.text)
        elif isinstance(event, Meta):
            self.meta = event
            self.stream_id = event.stream_id
        elif isinstance(event, Done):
            self.done = event
        elif isinstance(event, Error):
            self.error = event
        return event
