"""``RagClient``: the blocking client over ``httpx.Client``. Only the I/O is here, as blocking
calls; what it sends and what the answers mean is shared with the async client (``_base``,
``_resume``)."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from contextlib import closing
from typing import Any

import httpx

from rag_service.client._base import ClientBase, StreamBase, cancel_result
from rag_service.client._events import Delta, Error, Reconnecting, StreamEvent
from rag_service.client._requests import Answer, finished_answer
from rag_service.client._resume import Resumption

__all__ = ["AnswerStream", "RagClient"]


class AnswerStream(StreamBase[httpx.Client, Generator[StreamEvent, None, None]]):
    """The events of one answer, resumed across dropped connections; an iterator and a context
    manager. Leaving the block (or ``close()``) closes its response at once."""

    def __iter__(self) -> AnswerStream:
        return self

    def __next__(self) -> StreamEvent:
        return next(self._events)

    def close(self) -> None:
        self._events.close()

    def __enter__(self) -> AnswerStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def answer(self) -> Answer:
        """Read to the end; the whole answer (``StreamFailed`` on an ``error`` event)."""
        with self:
            for _ in self:
                pass
        return finished_answer(self._progress)

    def _run(self) -> Generator[StreamEvent, None, None]:
        progress = self._progress
        notice: Reconnecting | None = None
        while not progress.finished:
            if notice is not None:
                yield notice
                time.sleep(notice.delay_s)
            request = progress.next_request(time.monotonic()).build(self._http)
            try:
                with closing(self._http.send(request, stream=True)) as response:
                    if response.status_code != 200:
                        notice = progress.refused(
                            response.status_code,
                            response.read(),
                            response.headers,
                            time.monotonic(),
                        )
                    else:
                        yield progress.connected(response)
                        for chunk in response.iter_bytes():
                            yield from progress.received(chunk, time.monotonic())
                        notice = progress.ended(time.monotonic())
            except httpx.TransportError as error:
                notice = progress.failed(error, time.monotonic())


class RagClient(ClientBase[httpx.Client, AnswerStream]):
    """The service's blocking client; the API of ``AsyncRagClient`` without ``await``::

    with RagClient("http://127.0.0.1:8000", api_key=key) as client:
        print(client.answer("Do you ship to Austria?", context="conv-1").text)
    """

    def __enter__(self) -> RagClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every stream still open, then the HTTP client (when the client made it)."""
        for stream in list(self._streams):
            stream.close()
        if self._owns_http:
            self._http.close()

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
        return cancel_result(self._http.send(self._cancel_request(stream_id)))

    def _new_http(self, base_url: str) -> httpx.Client:
        return httpx.Client(base_url=base_url)

    def _new_stream(self, progress: Resumption) -> AnswerStream:
        return AnswerStream(self._http, progress)
