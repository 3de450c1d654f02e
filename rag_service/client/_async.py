"""``AsyncRagClient``: the asyncio client over ``httpx.AsyncClient``. Only the I/O is here,
awaited; what it sends and what the answers mean is shared with the blocking client
(``_base``, ``_resume``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx

from rag_service.client._base import ClientBase, StreamBase, cancel_result
from rag_service.client._events import Delta, Error, Reconnecting, StreamEvent
from rag_service.client._requests import Answer, finished_answer
from rag_service.client._resume import Resumption

__all__ = ["AsyncAnswerStream", "AsyncRagClient"]


class AsyncAnswerStream(StreamBase[httpx.AsyncClient, AsyncGenerator[StreamEvent, None]]):
    """The events of one answer, resumed across dropped connections; an async iterator and an
    async context manager. Leaving the block (or ``aclose()``) closes its response at once."""

    def __aiter__(self) -> AsyncAnswerStream:
        return self

    async def __anext__(self) -> StreamEvent:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        await self._events.aclose()

    async def __aenter__(self) -> AsyncAnswerStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def answer(self) -> Answer:
        """Read to the end; the whole answer (``StreamFailed`` on an ``error`` event)."""
        async with self:
            async for _ in self:
                pass
        return finished_answer(self._progress)

    async def _run(self) -> AsyncGenerator[StreamEvent, None]:
        progress = self._progress
        notice: Reconnecting | None = None
        while not progress.finished:
            if notice is not None:
                yield notice
                await asyncio.sleep(notice.delay_s)
            request = progress.next_request(time.monotonic()).build(self._http)
            try:
                response = await self._http.send(request, stream=True)
                async with aclosing(response):
                    if response.status_code != 200:
                        body = await response.aread()
                        notice = progress.refused(
                            response.status_code, body, response.headers, time.monotonic()
                        )
                    else:
                        yield progress.connected(response)
                        async for chunk in response.aiter_bytes():
                            for event in progress.received(chunk, time.monotonic()):
                                yield event
                        notice = progress.ended(time.monotonic())
            except httpx.TransportError as error:
                notice = progress.failed(error, time.monotonic())


class AsyncRagClient(ClientBase[httpx.AsyncClient, AsyncAnswerStream]):
    """The service's asyncio client (see docs/client.md)::

        async with AsyncRagClient("http://127.0.0.1:8000", api_key=key) as client:
            async for event in client.stream("Do you ship to Austria?", context="conv-1"):
                ...

    ``http``: your own ``httpx.AsyncClient`` (its ``base_url`` is used; you close it); else the
    client makes one and closes it in ``aclose()``.
    """

    async def __aenter__(self) -> AsyncRagClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every stream still open, then the HTTP client (when the client made it)."""
        for stream in list(self._streams):
            await stream.aclose()
        if self._owns_http:
            await self._http.aclose()

    async def answer(self, question: str, *, context: str, **options: Any) -> Answer:
        """The whole answer to ``question`` (options as for ``stream``)."""
        return await self.stream(question, context=context, **options).answer()

    async def stream_text(
        self, question: str, *, context: str, **options: Any
    ) -> AsyncIterator[str]:
        """Only the answer's text, piece by piece (``StreamFailed`` on an ``error`` event)."""
        async with self.stream(question, context=context, **options) as stream:
            async for event in stream:
                if isinstance(event, Delta):
                    yield event.text
                elif isinstance(event, Error):
                    finished_answer(stream.progress)  # raises StreamFailed

    async def cancel(self, stream_id: str) -> dict[str, Any]:
        """Stop the generation of ``stream_id`` (``DELETE /rag/stream/{id}``); its readers get
        an ``error`` event ``cancelled``. Returns the service's JSON answer."""
        response = await self._http.send(self._cancel_request(stream_id))
        return cancel_result(response)

    def _new_http(self, base_url: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=base_url)

    def _new_stream(self, progress: Resumption) -> AsyncAnswerStream:
        return AsyncAnswerStream(self._http, progress)
