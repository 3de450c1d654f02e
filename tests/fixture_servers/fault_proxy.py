"""A loopback TCP proxy that cuts chosen responses mid-stream.

    async with FaultProxy("127.0.0.1", llm_port, plans=[CutPlan(after_events=5)]) as proxy:
        base_url = proxy.url("/v1")     # the 1st response is cut after 5 SSE events,
        ...                             # later ones pass through untouched

It forwards bytes both ways unchanged. Each response, on a new connection or a kept-alive one,
takes the next queued ``CutPlan`` when its first byte arrives (``None`` or an empty queue: pass
through). A plan cuts the response's connection - both sides
closed at once, the upstream too, so a real model server stops generating - after a number of
response bytes or after the response body has carried a number of SSE events with ``data:``.
Events are counted in the de-chunked body, so HTTP/1.1 chunk framing never hides or fakes an
event boundary, and the cut falls exactly after the last byte of the N-th event.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from rag_service.errors import InvalidInput
from tests.fixture_servers.async_server import LoopbackServer

LOOPBACK = "127.0.0.1"
READ_SIZE = 65536


class ResponseScanner:
    """Counts SSE events carrying ``data:`` in a stream of HTTP/1.1 response bytes.

    Follows the response framing (head, then a chunked, length-delimited or close-delimited
    body; several responses in a row on a keep-alive connection) and feeds only body bytes to
    the SSE line parser.
    """

    def __init__(self) -> None:
        self.events = 0
        self._state = "head"
        self._buffer = bytearray()  # the head or a chunk-size/trailer line being collected
        self._remaining = 0  # body bytes left in this chunk or length-delimited body
        self._line = bytearray()  # the start of the current SSE line (enough to see "data")
        self._line_has_bytes = False
        self._event_has_data = False
        self._previous_cr = False

    @property
    def between_responses(self) -> bool:
        """True before a response's first byte: at the start or after a complete response."""
        return self._state == "head" and not self._buffer

    def feed(self, data: bytes, *, stop_after_events: int | None = None) -> int | None:
        """Scan ``data``; return the offset just past the event that reached
        ``stop_after_events`` (scanning stops there), or ``None`` if it was not reached."""
        position = 0
        while position < len(data):
            if stop_after_events is not None and self.events >= stop_after_events:
                return position
            position = self._step(data, position, stop_after_events)
        if stop_after_events is not None and self.events >= stop_after_events:
            return position
        return None

    def _step(self, data: bytes, position: int, stop_after_events: int | None) -> int:
        """Consume one framing element (or body slice) starting at ``position``."""
        if self._state in ("head", "chunk_size", "trailer"):
            return self._collect_line_or_head(data, position)
        if self._state == "chunk_crlf":
            self._remaining -= 1
            if self._remaining == 0:
                self._state = "chunk_size"
            return position + 1
        end = (
            len(data)
            if self._state == "body_until_close"
            else min(len(data), position + self._remaining)
        )
        consumed = self._scan_body(data, position, end, stop_after_events)
        if self._state != "body_until_close":
            self._remaining -= consumed - position
            if self._remaining == 0:
                self._state, self._remaining = (
                    ("chunk_crlf", 2) if self._state == "chunk_data" else ("head", 0)
                )
        return consumed

    def _collect_line_or_head(self, data: bytes, position: int) -> int:
        terminator = b"\r\n\r\n" if self._state == "head" else b"\r\n"
        self._buffer.extend(data[position : position + 1])
        if self._buffer.endswith(terminator):
            text = bytes(self._buffer[: -len(terminator)]).decode("latin-1")
            self._buffer.clear()
            self._after_line(text)
        return position + 1

    def _after_line(self, text: str) -> None:
        if self._state == "head":
            self._start_body(text)
        elif self._state == "chunk_size":
            size = int(text.split(";", 1)[0].strip() or "0", 16)
            self._state, self._remaining = ("chunk_data", size) if size else ("trailer", 0)
        elif text == "":  # the empty line that ends the trailers
            self._state = "head"

    def _start_body(self, head: str) -> None:
        lines = head.split("\r\n")
        status = int(lines[0].split(" ")[1]) if len(lines[0].split(" ")) > 1 else 200
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }
        if status < 200 or status in (204, 304):
            self._state = "head"
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = "chunk_size"
        elif "content-length" in headers:
            self._remaining = int(headers["content-length"])
            self._state = "body_length" if self._remaining else "head"
        else:
            self._state = "body_until_close"

    def _scan_body(self, data: bytes, start: int, end: int, stop_after_events: int | None) -> int:
        """Run the SSE line parser over ``data[start:end]``; stop right after the N-th event."""
        for index in range(start, end):
            byte = data[index]
            if byte == 0x0A and self._previous_cr:  # the LF of a CRLF already ended the line
                self._previous_cr = False
                continue
            self._previous_cr = byte == 0x0D
            if byte in (0x0A, 0x0D):
                self._end_line()
                if stop_after_events is not None and self.events >= stop_after_events:
                    return index + 1
            else:
                self._line_has_bytes = True
                if len(self._line) < 5:
                    self._line.append(byte)
        return end

    def _end_line(self) -> None:
        if not self._line_has_bytes:
            if self._event_has_data:
                self.events += 1
            self._event_has_data = False
        elif self._line.startswith(b"data") and (len(self._line) == 4 or self._line[4:5] == b":"):
            self._event_has_data = True
        self._line.clear()
        self._line_has_bytes = False


@dataclass(frozen=True)
class CutPlan:
    """When to cut one connection; exactly one of the two limits is set.

    ``reset=True`` closes with a TCP RST instead of a FIN (the peer sees "connection reset");
    bytes still in the kernel's send buffer may then be lost, so cuts are less exact.
    """

    after_response_bytes: int | None = None
    after_events: int | None = None
    reset: bool = False

    def __post_init__(self) -> None:
        limits = [self.after_response_bytes, self.after_events]
        if sum(limit is not None for limit in limits) != 1:
            raise InvalidInput("a CutPlan needs exactly one of after_response_bytes, after_events")
        if any(limit is not None and limit < 0 for limit in limits):
            raise InvalidInput("CutPlan limits must not be negative")


@dataclass
class ConnectionRecord:
    """What happened on one proxied connection (for assertions)."""

    index: int
    plan: CutPlan | None = None  # of the current (or last) response
    responses: int = 0
    response_bytes: int = 0  # of the current response
    events: int = 0  # SSE events of the current response
    cut: bool = False
    closed: bool = False


@dataclass
class _Pair:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class FaultProxy(LoopbackServer):
    """An asyncio TCP proxy on 127.0.0.1 in front of ``(target_host, target_port)``."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        plans: Iterable[CutPlan | None] = (),
        listen_port: int = 0,
    ) -> None:
        super().__init__()
        self.target_host = target_host
        self.target_port = target_port
        self._listen_port = listen_port
        self._plans: deque[CutPlan | None] = deque(plans)
        self._handlers: set[asyncio.Task[None]] = set()
        self.records: list[ConnectionRecord] = []

    # -- lifecycle ---------------------------------------------------------------------------

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._accept, LOOPBACK, self._listen_port)

    async def _end_connections(self) -> None:
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    # -- configuration and counters ---------------------------------------------------------

    def cut_next(self, *plans: CutPlan | None) -> None:
        """Queue plans for the next responses, in the order they start (``None``: pass through)."""
        self._plans.extend(plans)

    def url(self, path: str = "") -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"

    @property
    def connections(self) -> int:
        return len(self.records)

    @property
    def open_connections(self) -> int:
        return sum(not record.closed for record in self.records)

    @property
    def cuts(self) -> int:
        return sum(record.cut for record in self.records)

    # -- per connection ----------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        record = ConnectionRecord(len(self.records))
        self.records.append(record)
        try:
            await self._proxy(reader, writer, record)
        except asyncio.CancelledError:
            # stop() cancels open handlers; asyncio 3.11 reports a cancelled connection callback
            # as an "unhandled exception", so the handler ends quietly instead (it is top-level).
            writer.transport.abort()
        finally:
            record.closed = True
            self._handlers.discard(task)

    async def _proxy(
        self,
        client_reader: asyncio.StreamReader,
        client: asyncio.StreamWriter,
        record: ConnectionRecord,
    ) -> None:
        try:
            upstream_reader, upstream = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            client.transport.abort()
            return
        pair = _Pair(client, upstream)
        # With a zero high-water mark, drain() returns only once asyncio's buffer is empty, so
        # everything forwarded before a cut has reached the kernel when the socket is closed.
        client.transport.set_write_buffer_limits(high=0)
        pair.tasks = [
            asyncio.create_task(self._forward_requests(client_reader, upstream)),
            asyncio.create_task(self._forward_response(upstream_reader, pair, record)),
        ]
        try:
            await asyncio.gather(*pair.tasks)
        except (ConnectionError, OSError):
            pass
        finally:
            for task in pair.tasks:
                task.cancel()
            await asyncio.gather(*pair.tasks, return_exceptions=True)
            for writer in (client, upstream):
                writer.transport.abort()

    async def _forward_requests(
        self, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter
    ) -> None:
        while data := await reader.read(READ_SIZE):
            upstream.write(data)
            await upstream.drain()
        if upstream.can_write_eof():
            with contextlib.suppress(OSError):
                upstream.write_eof()

    async def _forward_response(
        self, reader: asyncio.StreamReader, pair: _Pair, record: ConnectionRecord
    ) -> None:
        scanner = ResponseScanner()
        events_before = 0  # the connection's events before the current response
        while data := await reader.read(READ_SIZE):
            if scanner.between_responses:  # a new response starts: it takes the next plan
                record.plan = self._plans.popleft() if self._plans else None
                record.responses += 1
                record.response_bytes = 0
                events_before = scanner.events
            plan = record.plan
            keep = self._bytes_before_cut(plan, record, scanner, data, events_before)
            pair.client.write(data[:keep])
            await pair.client.drain()
            record.response_bytes += keep
            record.events = scanner.events - events_before
            if keep < len(data) or self._limit_reached(plan, record):
                self._cut(pair, record)
                return
        pair.client.close()

    @staticmethod
    def _bytes_before_cut(
        plan: CutPlan | None,
        record: ConnectionRecord,
        scanner: ResponseScanner,
        data: bytes,
        events_before: int,
    ) -> int:
        """How many bytes of ``data`` go to the client before the plan's limit is hit."""
        if plan is None:
            scanner.feed(data)
            return len(data)
        if plan.after_response_bytes is not None:
            keep = max(0, min(len(data), plan.after_response_bytes - record.response_bytes))
            scanner.feed(data[:keep])
            return keep
        assert plan.after_events is not None
        end = scanner.feed(data, stop_after_events=events_before + plan.after_events)
        return len(data) if end is None else end

    @staticmethod
    def _limit_reached(plan: CutPlan | None, record: ConnectionRecord) -> bool:
        if plan is None:
            return False
        if plan.after_response_bytes is not None:
            return record.response_bytes >= plan.after_response_bytes
        return plan.after_events is not None and record.events >= plan.after_events

    @staticmethod
    def _cut(pair: _Pair, record: ConnectionRecord) -> None:
        record.cut = True
        for writer in (pair.client, pair.upstream):
            if record.plan is not None and record.plan.reset:
                sock = writer.get_extra_info("socket")
                if sock is not None:  # SO_LINGER 0: close() sends RST instead of FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
