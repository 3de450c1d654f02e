"""``AsyncRagClient``: the asyncio client over ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
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


class AsyncAnswerStream:
    """The events of one answer, resumed across dropped connections; an async iterator and an
    async context manager. Leaving the block (or ``aclose()``) closes its response at once."""

    def __init__(self, http: httpx.AsyncClient, progress: Resumption) -> None:
        self._http = http
        self._progress = progress
        self._events = self._run()

    @property
    def progress(self) -> Resumption:
        """The answer so far: ``text``, ``meta``, ``done``, ``error``, ``stream_id``,
        ``last_event_id``, ``reconnects``."""
        return self._progress

    def __aiter__(self) -> AsyncAnswerStream:
        return self

    async def __anext__(self) -> StreamEvent:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        await self._events.aclose()

    async def __aenter__(self) -> AsyncAnswerStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def answer(self) -> Answer:
        """Read to the end; the whole answer (``StreamFailed`` on an ``error`` event)."""
        async with self:
            async for _ in self:
                pass
        return finished_answer(self._progress)

    async def _run(self) -> AsyncGenerator[StreamEvent, None]:
        progress = self._progress
        while not progress.finished:
            request = progress.next_request(time.monotonic())
            try:
                response = await self._http.send(
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
                        body = await response.aread()
                        notice = progress.refused(
                            response.status_code, body, response.headers, time.monotonic()
                        )
                    else:
                        yield progress.connected(response)
                        async for chunk in response.aiter_bytes():
                            for item in progress.feed(chunk):
                                yield progress.deliver(item)
                            progress.check_deadline(time.monotonic())
                        if progress.finished:
                            return
                        notice = progress.lost("the connection closed mid-answer", time.monotonic())
                except httpx.TransportError as error:
                    if progress.finished:  # the answer is whole; the rest was only framing
                        return
                    notice = progress.lost(_describe(error), time.monotonic())
                finally:
                    await response.aclose()
            yield notice
            await asyncio.sleep(notice.delay_s)


class AsyncRagClient:
    """The service's asyncio client (see docs/client.md)::

        async with AsyncRagClient("http://127.0.0.1:8000", api_key=key) as client:
            async for event in client.stream("Do you ship to Austria?", context="conv-1"):
                ...

    ``http``: your own ``httpx.AsyncClient`` (its ``base_url`` is used; you close it); else the
    client makes one and closes it in ``aclose()``.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        policy: RetryPolicy | None = None,
        http: httpx.AsyncClient | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self._api_key = api_key
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(base_url=base_url)
        self._rng = rng or random.Random()
        self._streams: weakref.WeakSet[AsyncAnswerStream] = weakref.WeakSet()

    async def __aenter__(self) -> AsyncRagClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every stream still open, then the HTTP client (when the client made it)."""
        for stream in list(self._streams):
            await stream.aclose()
        if self._owns_http:
            await self._http.aclose()

    def stream(
        self,
        question: str,
        *,
        context: str,
        messages: Sequence[Message] | None = None,
        filters: Mapping[str, str | int | float | bool] | None = None,
        refresh: bool | None = None,
        top_k: int | None = None,
    ) -> AsyncAnswerStream:
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
    ) -> AsyncAnswerStream:
        """The events of an OpenAI-style ``POST /v1/chat/completions`` answer (``options``:
        more body fields, e.g. ``max_tokens``), resumed through ``/rag/stream/{id}``."""
        opening = chat_opening(messages, model=model, options=options)
        return self._open(opening, request_headers(self._api_key, context))

    def resume(self, stream_id: str, *, last_event_id: str | None = None) -> AsyncAnswerStream:
        """The events of ``stream_id`` after ``last_event_id`` (all without it)."""
        return self._open(resume_opening(stream_id, last_event_id), request_headers(self._api_key))

    async def answer(self, question: str, *, context: str, **options: Any) -> Answer:
        """The whole answer to ``question`` (options as for ``stream``)."""
        return await self.stream(question, context=context, **options).answer()

    async def stream_text(
        self, question: str, *, context: str, **options: Any
    ) -> AsyncIterator[str]:
        """Only the answer's text, piece by piece (``StreamFailed`` on an ``error`` event)."""
        stream = self.stream(question, context=context, **options)
        async with stream:
            async for event in stream:
                if isinstance(event, Delta):
                    yield event.text
                elif isinstance(event, Error):
                    finished_answer(stream.progress)  # raises StreamFailed

    async def cancel(self, stream_id: str) -> dict[str, Any]:
        """Stop the generation of ``stream_id`` (``DELETE /rag/stream/{id}``); its readers get
        an ``error`` event ``cancelled``. Returns the service's JSON answer."""
        response = await self._http.delete(
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

    def _open(self, opening: Opening, headers: dict[str, str]) -> AsyncAnswerStream:
        progress = Resumption(
            opening, self.policy, self._rng, headers=headers, now=time.monotonic()
        )
        stream = AsyncAnswerStream(self._http, progress)
        self._streams.add(stream)
        return stream


def _describe(error: httpx.TransportError) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
