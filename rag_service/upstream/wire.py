"""One attempt on the wire: POST the request, check the answer, turn its SSE into chunks.

Everything httpx raises is translated here (see ``classify``); callers only see our errors. The
response is closed in a ``finally``, so a consumer that stops iterating (``aclose``, task
cancellation) releases the connection at once.

Malformed JSON in a complete data event is an ``UpstreamProtocolError`` and is not retried: with
deterministic decoding the upstream would most likely send the same bytes again. A data line cut
off by a lost connection never forms a complete event (an event needs its blank line), so that
case surfaces as a cut stream and is retried.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import httpx

from rag_service.errors import ConfigurationError, UpstreamProtocolError, UpstreamRetryable
from rag_service.upstream.asyncio_transport import ReleasableBody
from rag_service.upstream.classify import (
    message_of,
    redact,
    status_error,
    transport_error,
    truncate,
)
from rag_service.upstream.http11_connection import RAW_BODY_EXTENSION
from rag_service.upstream.sse import SSEEvent, SSEParser

MAX_ERROR_BODY_BYTES = 16 * 1024
MAX_EVENT_CHARS = 1 << 20  # one chunk event is a few hundred bytes; this bounds a broken stream
DONE_MARKER = "[DONE]"


@dataclass(frozen=True)
class CompletionChunk:
    """What one OpenAI ``chat.completion.chunk`` tells us."""

    text: str
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None


async def stream_completion(
    http: httpx.AsyncClient,
    url: str | httpx.URL,
    *,
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    timeouts: httpx.Timeout,
    secret: str = "",
) -> AsyncGenerator[CompletionChunk, None]:
    """Yield the chunks of one streamed completion; raise an ``UpstreamError`` on failure."""
    try:
        request = http.build_request("POST", url, headers=dict(headers), timeout=timeouts)
    except httpx.InvalidURL as exc:
        raise ConfigurationError(f"invalid upstream URL {url!r}: {exc}") from exc
    sent = ReleasableBody(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
    request.stream = sent
    request.headers["Content-Type"] = "application/json"
    request.headers["Content-Length"] = str(len(sent))
    try:
        response = await http.send(request, stream=True)
    except httpx.RequestError as exc:
        raise transport_error(exc, response_started=False) from exc
    sent.release()  # answered: the prompt need not stay in memory for the whole stream
    try:
        await _check_response(response, secret)
        async with aclosing(_read_chunks(response, secret)) as chunks:
            async for chunk in chunks:
                yield chunk
    finally:
        await response.aclose()


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


async def _read_chunks(
    response: httpx.Response, secret: str
) -> AsyncGenerator[CompletionChunk, None]:
    parser = SSEParser()
    finished = False
    try:
        async for raw in _body_pieces(response):
            for event in parser.feed(raw):
                if event.data.strip() == DONE_MARKER:
                    return
                chunk = parse_chunk(event, secret)
                finished = finished or chunk.finish_reason is not None
                yield chunk
            if parser.pending_chars > MAX_EVENT_CHARS:
                raise UpstreamProtocolError(
                    f"upstream sent an event longer than {MAX_EVENT_CHARS} characters"
                )
    except httpx.RequestError as exc:
        if finished:  # everything arrived but [DONE]: nothing is lost
            return
        raise transport_error(exc, response_started=True) from exc
    if not finished:
        raise UpstreamRetryable("upstream stream ended before [DONE]", reason="stream_cut")


def _body_pieces(response: httpx.Response) -> AsyncIterable[bytes]:
    """The body as it arrives: straight from our transport when it is not content-coded."""
    raw = response.extensions.get(RAW_BODY_EXTENSION)
    if isinstance(raw, httpx.AsyncByteStream) and "content-encoding" not in response.headers:
        return raw
    return response.aiter_bytes()


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
