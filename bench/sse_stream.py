"""One SSE stream of the load client (``bench.sse_load_client``): request, parse, record.

``--route rag`` reads ``POST /rag/stream?context=<id>`` (native events: ``meta``, ``delta``,
``done``, ``error``). ``--route v1`` reads ``POST /v1/chat/completions`` with ``"stream": true``
and ``X-Context-Id: <id>``, as the ``openai`` SDK would: ``data:`` chunks whose first one carries
the extra ``rag`` field (the context state), text in ``delta.content``, the end at
``data: [DONE]``, a failure as ``data: {"error": ...}``; the finishing chunks repeat their native
event's id, so only a change of id counts as the next event. Each request is a hand-written
HTTP/1.1 request with ``Connection: close``; the response is parsed incrementally (chunked
transfer coding by hand, then SSE events through the project's one parser,
``rag_service.sse_parser``) inside ``data_received``, on uvloop.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import cast

from bench.load_report import StreamRecord
from rag_service.sse_parser import SSEEvent, SSEParser

_STREAM_STATUS_OK = 200
_REFUSED_STATUS = 503  # the service sheds load: retried after Retry-After, as SDK clients do
ROUTES = ("rag", "v1")


def request_bytes(port: int, context_id: str, query: str, route: str = "rag") -> bytes:
    if route == "rag":
        target, extra = f"/rag/stream?context={context_id}", ""
        body = json.dumps({"query": query}).encode()
    else:
        target, extra = "/v1/chat/completions", f"X-Context-Id: {context_id}\r\n"
        messages = [{"role": "user", "content": query}]
        body = json.dumps({"model": "bench", "stream": True, "messages": messages}).encode()
    head = (
        f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\n{extra}Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class SseStreamProtocol(asyncio.Protocol):
    """One ``POST /rag/stream``: writes the request, parses the response as it arrives."""

    def __init__(
        self, record: StreamRecord, request: bytes, *, stop_after_first: bool, route: str = "rag"
    ) -> None:
        self.record = record
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._request = request
        self._stop_after_first = stop_after_first
        self._event = self._native_event if route == "rag" else self._openai_event
        self._transport: asyncio.Transport | None = None
        self._head = b""
        self._raw = bytearray()  # chunked body bytes not yet de-chunked
        self._body = bytearray()  # de-chunked SSE bytes of this read, not yet parsed
        self._sse = SSEParser()
        self._in_body = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but they implement it.
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self._in_body:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            self._start_body(self._head[:end], self._head[end + 4 :])
            if self.finished.done():
                return
        else:
            self._raw += data
        self._dechunk()
        self._parse_events(now)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done():
            if self.record.outcome is None:
                self.record.outcome = "connection_lost"
            self.record.ended_at = time.monotonic()
            self.finished.set_result(None)

    def abort(self, outcome: str) -> None:
        if self.record.outcome is None:
            self.record.outcome = outcome
        self._end()

    def _start_body(self, head: bytes, rest: bytes) -> None:
        self._in_body = True
        status_line, _, headers = head.partition(b"\r\n")
        self.record.status = int(status_line.split()[1])
        if self.record.status == _REFUSED_STATUS:
            self.record.retry_after_s = retry_after_s(headers)
            self.abort("refused")
            return
        if self.record.status != _STREAM_STATUS_OK:
            self.abort(f"http_{self.record.status}")
            return
        if b"transfer-encoding: chunked" not in headers.lower():
            self.abort("not_chunked")
            return
        self._raw += rest

    def _dechunk(self) -> None:
        raw = self._raw
        while True:
            line_end = raw.find(b"\r\n")
            if line_end < 0:
                return
            size = int(raw[:line_end].split(b";")[0], 16)
            if size == 0:
                del raw[:]
                return
            if len(raw) < line_end + 2 + size + 2:
                return
            self._body += raw[line_end + 2 : line_end + 2 + size]
            del raw[: line_end + 2 + size + 2]

    def _parse_events(self, now: float) -> None:
        if not self._body:
            return
        events = self._sse.feed(bytes(self._body))
        del self._body[:]
        for event in events:
            if self.finished.done():
                return
            self._event(event, now)

    def _native_event(self, event: SSEEvent, now: float) -> None:
        record = self.record
        if event.id is not None:
            record.note_seq(int(event.id.rpartition(":")[2]))
        name = event.event
        if name == "delta":
            record.delta_times.append(now)
            record.parts.append(json.loads(event.data)["text"])
            if self._stop_after_first:
                self.abort("warmed")
        elif name == "meta":
            record.meta_at = now
            record.state = json.loads(event.data)["context"]["state"]
        elif name == "done":
            record.done_at = now
            record.outcome = "done"
            self._end()
        elif name == "error":
            record.outcome = "error:" + str(json.loads(event.data).get("code"))
            self._end()

    def _openai_event(self, event: SSEEvent, now: float) -> None:
        record = self.record
        if event.id:
            seq = int(event.id.rpartition(":")[2])
            if seq != record.last_seq:  # the finishing chunks and [DONE] share the done's id
                record.note_seq(seq)
        if event.data == "[DONE]":
            record.done_at = now
            record.outcome = "done"
            self._end()
            return
        chunk = json.loads(event.data)
        if "error" in chunk:
            record.outcome = "error:" + str(chunk["error"].get("code"))
            self._end()
            return
        rag = chunk.get("rag")
        if rag is not None:
            record.meta_at = now
            record.state = rag.get("state")
        for choice in chunk.get("choices") or ():
            text = (choice.get("delta") or {}).get("content")
            if text:
                record.delta_times.append(now)
                record.parts.append(text)
                if self._stop_after_first:
                    self.abort("warmed")

    def _end(self) -> None:
        if self.record.ended_at is None:
            self.record.ended_at = time.monotonic()
        if self._transport is not None:
            self._transport.close()
        if not self.finished.done():
            self.finished.set_result(None)


def retry_after_s(headers: bytes) -> float:
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"retry-after":
            return float(value.strip())
    return 1.0


async def open_stream(
    port: int,
    record: StreamRecord,
    request: bytes,
    *,
    stop_after_first: bool = False,
    route: str = "rag",
) -> SseStreamProtocol | None:
    """Connect and send; None (with the record's outcome set) when the connection fails."""
    loop = asyncio.get_running_loop()
    record.opened_at = time.monotonic()
    if record.started_at is None:  # a retry keeps the first attempt's start (TTFT as users see it)
        record.started_at = record.opened_at
    protocol = SseStreamProtocol(record, request, stop_after_first=stop_after_first, route=route)
    try:
        await loop.create_connection(lambda: protocol, "127.0.0.1", port)
    except OSError as error:
        record.outcome = f"connect_error:{error.errno}"
        return None
    return protocol
