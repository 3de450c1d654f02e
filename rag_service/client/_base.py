"""What the async and the blocking client share, free of I/O, as httpx's two clients share its
``BaseClient``: the settings, the requests each call sends and what the answers mean.

``_async.py`` and ``_sync.py`` add only the I/O on top: the same calls, awaited in one and
blocking in the other. The answer's own logic (resume, retries, parsing) is ``_resume.Resumption``.
"""

from __future__ import annotations

import random
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from typing import Any, Generic, TypeVar

import httpx

from rag_service.client._errors import refusal
from rag_service.client._events import StreamEvent
from rag_service.client._policy import RetryPolicy
from rag_service.client._requests import (
    DEFAULT_URL,
    Message,
    chat_opening,
    question_opening,
    request_headers,
    resume_opening,
)
from rag_service.client._resume import STREAM_PATH, Opening, Resumption

__all__ = ["ClientBase", "StreamBase", "cancel_result"]

HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)
EventsT = TypeVar("EventsT", Generator[StreamEvent, None, None], AsyncGenerator[StreamEvent, None])
StreamT = TypeVar("StreamT", bound="StreamBase[Any, Any]")


class StreamBase(ABC, Generic[HttpT, EventsT]):
    """One answer's stream: the HTTP client it reads with, its progress, and its events (the
    generator ``_run`` of the subclass, which does the I/O)."""

    def __init__(self, http: HttpT, progress: Resumption) -> None:
        self._http: HttpT = http
        self._progress = progress
        self._events: EventsT = self._run()

    @property
    def progress(self) -> Resumption:
        """The answer so far: ``text``, ``meta``, ``done``, ``error``, ``stream_id``,
        ``last_event_id``, ``reconnects``, ``finished``."""
        return self._progress

    @abstractmethod
    def _run(self) -> EventsT:
        """The events: each response's, and a ``Reconnecting`` before every next try."""


class ClientBase(ABC, Generic[HttpT, StreamT]):
    """The settings of a client and the requests of its calls (see docs/client.md).

    ``http``: your own HTTP client (its ``base_url`` is used; you close it); else the client
    makes one and closes it when it is closed. ``rng``: the backoff's jitter (tests seed it).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        policy: RetryPolicy | None = None,
        http: HttpT | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self._api_key = api_key
        self._owns_http = http is None
        self._http: HttpT = self._new_http(base_url) if http is None else http
        self._rng = rng or random.Random()
        self._streams: weakref.WeakSet[StreamT] = weakref.WeakSet()

    def stream(
        self,
        question: str,
        *,
        context: str,
        messages: Sequence[Message] | None = None,
        filters: Mapping[str, str | int | float | bool] | None = None,
        refresh: bool | None = None,
        top_k: int | None = None,
    ) -> StreamT:
        """The events of the answer to ``question`` in conversation ``context``."""
        opening = question_opening(
            question,
            context=context,
            messages=messages,
            filters=filters,
            refresh=refresh,
            top_k=top_k,
        )
        return self._open(opening, request_headers(self._api_key))

    def stream_chat(
        self,
        messages: Sequence[Message],
        *,
        context: str | None = None,
        model: str = "rag-service",
        **options: Any,
    ) -> StreamT:
        """The events of an OpenAI-style ``POST /v1/chat/completions`` answer (``options``:
        more body fields, e.g. ``max_tokens``), resumed through ``/rag/stream/{id}``."""
        opening = chat_opening(messages, model=model, options=options)
        return self._open(opening, request_headers(self._api_key, context))

    def resume(self, stream_id: str, *, last_event_id: str | None = None) -> StreamT:
        """The events of ``stream_id`` after ``last_event_id`` (all without it)."""
        return self._open(resume_opening(stream_id, last_event_id), request_headers(self._api_key))

    def _open(self, opening: Opening, headers: dict[str, str]) -> StreamT:
        progress = Resumption(
            opening, self.policy, self._rng, headers=headers, now=time.monotonic()
        )
        stream = self._new_stream(progress)
        self._streams.add(stream)
        return stream

    def _cancel_request(self, stream_id: str) -> httpx.Request:
        """``DELETE /rag/stream/{id}``; its answer is read by ``cancel_result``."""
        return self._http.build_request(
            "DELETE",
            f"{STREAM_PATH}/{stream_id}",
            headers=request_headers(self._api_key),
            timeout=self.policy.timeout(self.policy.deadline_s),
        )

    @abstractmethod
    def _new_http(self, base_url: str) -> HttpT:
        """The HTTP client made when none was given."""

    @abstractmethod
    def _new_stream(self, progress: Resumption) -> StreamT:
        """The stream that reads the answer of ``progress``."""


def cancel_result(response: httpx.Response) -> dict[str, Any]:
    """The service's JSON answer to a cancel, or the refusal raised (the body is read)."""
    if response.status_code != 200:
        raise refusal(response.status_code, response.content, response.headers.get("retry-after"))
    body: dict[str, Any] = response.json()
    return body
