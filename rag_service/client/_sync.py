"""``RagClient``: the blocking client over ``httpx.Client``, the same resumption as the async
one (``_resume.Resumption``) driven by blocking calls."""

from __future__ import annotations

import random
import time
import weakref
from collections.abc import Generator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from rag_service.client._errors import refusal
from rag_service.client._events import Delta, Error, StreamEvent
from rag_service.client._policy import RetryPolicy
from rag_service.client._requests import (
    DEFAULT_URL,
    Answer,
    Message,
    chat_opening,
    finished_answer,
    question_opening,
    request_headers,
    resume_opening,
)
from rag_service.client._resume import STREAM_PATH, Opening, Resumption


class AnswerStream:
    """The events of one answer, resumed across dropped connections; an iterator and a context
    manager. Leaving the block (or ``close()``) closes its response at once."""

    def __init__(self, http: httpx.Client, progress: Resumption) -> None:
        self._http = http
        self._progress = progress
        self._events = self._run()

    @property
    def progress(self) -> Resumption:
        """The answer so far (see ``AsyncAnswerStream.progress``)."""
        return self._progress

    def __iter__(self) -> AnswerStream:
        return self

    def __next__(self) -> StreamEvent:
        return next(self._events)

    def close(self) -> None:
        self._events.close()

    def __enter__(self) -> AnswerStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def answer(self) -> Answer:
        """Read to the end; the whole answer (``StreamFailed`` on an ``error`` event)."""
        with self:
            for _ in self:
                pass
        return finished_answer(self._progress)

    def _run(self) -> Generator[StreamEvent, None, None]:
        progress = self._progress
        while not progress.finished:
            request = progress.next_request(time.monotonic())
            try:
                response = self._http.send(
                    self._http.build_request(
                        request.method,
                        request.path,
                        params=request.params,
                        json=request.json,
                        headers=request.headers,
                        timeout=request.timeout,
                    ),
                    stream=True,
                )
            except httpx.TransportError as error:
                notice = progress.lost(_describe(error), time.monotonic())
            else:
                try:
                    if response.status_code != 200:
                        body = response.read()
                        notice = progress.refused(
                            response.status_code, body, response.headers, time.monotonic()
                        )
                    else:
                        yield progress.connected(response)
                        for chunk in response.iter_bytes():
                            for item in progress.feed(chunk):
                                yield progress.deliver(item)
                            progress.check_deadline(time.monotonic())
                        if progress.finished:
                            return
                        notice = progress.lost("the connection closed mid-answer", time.monotonic())
                except httpx.TransportError as error:
                    if progress.finished:
                        return
                    notice = progress.lost(_describe(error), time.monotonic())
                finally:
                    response.close()
            yield notice
            time.sleep(notice.delay_s)


class RagClient:
    """The service's blocking client; the API of ``AsyncRagClient`` without ``await``::

    with RagClient("http://127.0.0.1:8000", api_key=key) as client:
        print(client.answer("Do you ship to Austria?", context="conv-1").text)
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        policy: RetryPolicy | None = None,
        http: httpx.Client | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self._api_key = api_key
        self._owns_http = http is None
        self._http = http or httpx.Client(base_url=base_url)
        self._rng = rng or random.Random()
        self._streams: weakref.WeakSet[AnswerStream] = weakref.WeakSet()

    def __enter__(self) -> RagClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every stream still open, then the HTTP client (when the client made it)."""
        for stream in list(self._streams):
            stream.close()
        if self._owns_http:
            self._http.close()

    def stream(
        self,
        question: str,
        *,
        context: str,
        messages: Sequence[Message] | None = None,
        filters: Mapping[str, str | int | float | bool] | None = None,
        refresh: bool | None = None,
        top_k: int | None = None,
    ) -> AnswerStream:
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
    ) -> AnswerStream:
        """See ``AsyncRagClient.stream_chat``."""
        opening = chat_opening(messages, model=model, options=options)
        return self._open(opening, request_headers(self._api_key, context))

    def resume(self, stream_id: str, *, last_event_id: str | None = None) -> AnswerStream:
        """The events of ``stream_id`` after ``last_event_id`` (all without it)."""
        return self._open(resume_opening(stream_id, last_event_id), request_headers(self._api_key))

    def answer(self, question: str, *, context: str, **options: Any) -> Answer:
        """The whole answer to ``question`` (options as for ``stream``)."""
        return self.stream(question, context=context, **options).answer()

    def stream_text(self, question: str, *, context: str, **options: Any) -> Iterator[str]:
        """Only the answer's text, piece by piece (``StreamFailed`` on an ``error`` event)."""
        with self.stream(question, context=context, **options) as stream:
            for event in stream:
                if isinstance(event, Delta):
                    yield event.text
                elif isinstance(event, Error):
                    finished_answer(stream.progress)  # raises StreamFailed

    def cancel(self, stream_id: str) -> dict[str, Any]:
        """See ``AsyncRagClient.cancel``."""
        response = self._http.delete(
            f"{STREAM_PATH}/{stream_id}",
            headers=request_headers(self._api_key),
            timeout=self.policy.timeout(self.policy.deadline_s),
        )
        if response.status_code != 200:
            raise refusal(
                response.status_code, response.content, response.headers.get("retry-after")
            )
        body: dict[str, Any] = response.json()
        return body

    def _open(self, opening: Opening, headers: dict[str, str]) -> AnswerStream:
        progress = Resumption(
            opening, self.policy, self._rng, headers=headers, now=time.monotonic()
        )
        stream = AnswerStream(self._http, progress)
        self._streams.add(stream)
        return stream


def _describe(error: httpx.TransportError) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
