"""One attempt on the wire: POST the request, check the answer, turn its SSE into chunks.

The answer's chunks are pushed, not pulled: our transport hands each body piece to a
``ChunkReader`` inside the connection's ``data_received``, which parses it and calls the
attempt's chunk callback at once. A streamed token thus costs no task wake-up and no async
generator hop between the socket and the session it ends up in (docs/upstream.md, "Transport").

The request is handed to the transport directly, not through ``httpx.AsyncClient``: the client's
per-request pipeline (header merging, cookie extraction, redirect and auth hooks, none of which
this endpoint uses) cost a sizeable share of the CPU of setting up a stream. httpx still defines
the request, the response, the transport interface and the exceptions.

Everything httpx raises is translated here (see ``classify``); callers only see our errors. The
response is closed in a ``finally``, so a cancelled attempt releases its connection at once.

Malformed JSON in a complete data event is an ``UpstreamProtocolError`` and is not retried: with
deterministic decoding the upstream would most likely send the same bytes again. A data line cut
off by a lost connection never forms a complete event (an event needs its blank line), so that
case surfaces as a cut stream and is retried.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from rag_service import __version__
from rag_service.errors import ConfigurationError, UpstreamProtocolError, UpstreamRetryable
from rag_service.upstream.asyncio_transport import ReleasableBody
from rag_service.upstream.classify import (
    message_of,
    redact,
    status_error,
    transport_error,
    truncate,
)
from rag_service.upstream.http11_connection import RAW_BODY_EXTENSION, ResponseBody
from rag_service.upstream.sse import SSEEvent, SSEParser

MAX_ERROR_BODY_BYTES = 16 * 1024
MAX_EVENT_CHARS = 1 << 20  # one chunk event is a few hundred bytes; this bounds a broken stream
DONE_MARKER = "[DONE]"
USER_AGENT = f"rag-service/{__version__}"


@dataclass(frozen=True)
class CompletionChunk:
    """What one OpenAI ``chat.completion.chunk`` tells us."""

    text: str
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None


ChunkCallback = Callable[[CompletionChunk], None]


class CompletionsEndpoint:
    """``POST {base_url}/chat/completions`` with the parts that are the same for every request
    (URL, headers, timeouts) prepared once."""

    __slots__ = ("_headers", "_invalid", "_timeouts", "_transport", "_url", "secret")

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        url: str,
        *,
        headers: Mapping[str, str],
        timeouts: httpx.Timeout,
        secret: str = "",
    ) -> None:
        self._transport = transport
        self.secret = secret
        self._timeouts = timeouts.as_dict()
        self._invalid = ""
        self._headers: list[tuple[bytes, bytes]] = []
        try:
            self._url: httpx.URL | None = httpx.URL(url)
        except httpx.InvalidURL as exc:
            self._url = None  # every request reports it as a ConfigurationError
            self._invalid = f"invalid upstream URL {url!r}: {exc}"
            return
        fixed = {
            "Host": self._url.netloc.decode("ascii"),
            "User-Agent": USER_AGENT,
            "Accept": "text/event-stream",
            "Content-Type": "application/json",
            **headers,
        }
        self._headers = [(name.encode(), value.encode()) for name, value in fixed.items()]

    def request(self, body: Mapping[str, Any]) -> httpx.Request:
        if self._url is None:
            raise ConfigurationError(self._invalid)
        sent = ReleasableBody(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
        headers = [*self._headers, (b"Content-Length", str(len(sent)).encode())]
        return httpx.Request(
            "POST", self._url, headers=headers, stream=sent, extensions={"timeout": self._timeouts}
        )

    async def stream(self, body: Mapping[str, Any], on_chunk: ChunkCallback) -> None:
        """Stream one completion into ``on_chunk``; raise an ``UpstreamError`` on failure.

        While the answer streams, this frame holds only the response body and the reader: the
        request, its JSON and httpx's response object are let go once the head has been checked
        (thousands of streams are open at once). It also runs the push loop of our transport's
        body itself, rather than awaiting ``ResponseBody.push``: one coroutine frame less per
        stream.
        """
        response = await self._send(self.request(body))
        del body
        raw = response.extensions.get(RAW_BODY_EXTENSION)
        source: ResponseBody | httpx.Response = response
        if isinstance(raw, ResponseBody) and "content-encoding" not in response.headers:
            source = raw
            del response
        reader = ChunkReader(on_chunk, self.secret)
        try:
            if isinstance(source, ResponseBody):
                source.start_push(reader)
                while source.push_pending():
                    await source.next_change()
            else:
                await _push_decoded(source, reader)
        except httpx.RequestError as exc:
            if not reader.finished:  # all but [DONE] arrived: nothing is lost, else retry
                raise transport_error(exc, response_started=True) from exc
        else:
            if not (reader.done or reader.finished):
                raise UpstreamRetryable("upstream stream ended before [DONE]", reason="stream_cut")
        finally:
            await source.aclose()

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """The checked head of the answer to ``request`` (whose body is released)."""
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.RequestError as exc:
            raise transport_error(exc, response_started=False) from exc
        finally:
            if isinstance(request.stream, ReleasableBody):
                request.stream.release()  # answered (or failed): the prompt need not stay
        try:
            await _check_response(response, self.secret)
        except BaseException:
            await response.aclose()
            raise
        return response


async def _check_response(response: httpx.Response, secret: str) -> None:
    if response.status_code != 200:
        body = await _read_error_body(response)
        raise status_error(
            response.status_code, response.headers, body, now=time.time(), secret=secret
        )
    content_type = response.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "text/event-stream":
        raise UpstreamProtocolError(
            f"upstream answered 200 with content type {truncate(content_type, 80)!r}, "
            "not text/event-stream"
        )


async def _read_error_body(response: httpx.Response) -> bytes:
    collected = bytearray()
    try:
        async for piece in response.aiter_bytes():
            collected += piece
            if len(collected) >= MAX_ERROR_BODY_BYTES:
                break
    except httpx.RequestError:
        pass  # the status already says what happened; a half-read message is still useful
    return bytes(collected[:MAX_ERROR_BODY_BYTES])


class ChunkReader:
    """A ``BodyConsumer``: parses body pieces into chunks and passes each one on at once."""

    __slots__ = ("_on_chunk", "_parser", "_secret", "done", "finished")

    def __init__(self, on_chunk: ChunkCallback, secret: str) -> None:
        self._on_chunk = on_chunk
        self._secret = secret
        self._parser = SSEParser()
        self.done = False  # [DONE] arrived
        self.finished = False  # a chunk with a finish_reason arrived

    def __call__(self, data: bytes) -> bool:
        """Take one body piece; True once ``[DONE]`` arrived (nothing more is wanted)."""
        for event in self._parser.feed(data):
            if event.data.strip() == DONE_MARKER:
                self.done = True
                return True
            chunk = parse_chunk(event, self._secret)
            self.finished = self.finished or chunk.finish_reason is not None
            self._on_chunk(chunk)
        if self._parser.pending_chars > MAX_EVENT_CHARS:
            raise UpstreamProtocolError(
                f"upstream sent an event longer than {MAX_EVENT_CHARS} characters"
            )
        return False


async def _push_decoded(response: httpx.Response, reader: ChunkReader) -> None:
    """The body through httpx's decoders (a content-coded body, or another transport)."""
    async for piece in response.aiter_bytes():
        if reader(piece):
            return


def parse_chunk(event: SSEEvent, secret: str = "") -> CompletionChunk:
    """Interpret one SSE event of an OpenAI stream; upstream ``error`` payloads raise."""
    try:
        parsed: object = json.loads(event.data)
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
    return CompletionChunk(
        text=text, finish_reason=finish_reason, usage=usage if isinstance(usage, dict) else None
    )


def _error_payload(message: str, secret: str) -> UpstreamProtocolError:
    return UpstreamProtocolError(
        f"upstream sent an error in the stream: {redact(truncate(message), secret)}"
    )
