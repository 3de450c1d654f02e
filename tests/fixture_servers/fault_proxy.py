"""A loopback TCP proxy that cuts chosen responses mid-stream.

    async with FaultProxy("127.0.0.1", llm_port, plans=[CutPlan(after_events=5)]) as proxy:
        base_url = proxy.url("/v1")     # the 1st response is cut after 5 SSE events,
        ...                             # later ones pass through untouched

It forwards bytes both ways unchanged. Each response, on a new connection or a kept-alive one,
takes the next queued ``CutPlan`` when its first byte arrives (``None`` or an empty queue: pass
through). A plan cuts the response's connection - both sides
closed at once, the upstream too, so a real model server stops generating - after a number of
response bytes or after the response body has carried a number of SSE events with ``data:``.
Events are counted in the de-chunked body (h11 reads the framing, the project's SSE parser the
body), so HTTP/1.1 chunk framing never hides or fakes an event boundary, and the cut falls
exactly after the last byte of the N-th event.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import h11

from rag_service.errors import InvalidInput
from rag_service.sse_parser import SSEParser
from tests.fixture_servers.async_server import LoopbackServer

LOOPBACK = "127.0.0.1"
READ_SIZE = 65536
_LINE_END = re.compile(rb"[\r\n]")


class ResponseScanner:
    """Counts SSE events carrying ``data:`` in a stream of HTTP/1.1 response bytes.

    h11 follows the response framing (head, then a chunked, length-delimited or close-delimited
    body; several responses in a row on a keep-alive connection) and hands the body of each
    response to a fresh ``rag_service.sse_parser.SSEParser``, which counts its events. h11 reads
    responses for a client that sent a request, so the scanner tells it, before each response,
    that a ``GET`` was sent: the proxy forwards requests as raw bytes, and the framing of a
    response does not depend on its request (but for ``HEAD``, which no upstream here gets).
    """

    def __init__(self) -> None:
        self.events = 0
        self._http = h11.Connection(h11.CLIENT)
        self._sse = SSEParser()
        self._expect_response()

    @property
    def between_responses(self) -> bool:
        """True before a response's first byte: at the start or after a complete response."""
        return self._http.their_state is h11.SEND_RESPONSE and not self._http.trailing_data[0]

    def feed(self, data: bytes, *, stop_after_events: int | None = None) -> int | None:
        """Scan ``data``; return the offset just past the event that reached
        ``stop_after_events`` (scanning stops there), or ``None`` if it was not reached."""
        if stop_after_events is None:
            self._scan(data)
            return None
        if self.events >= stop_after_events:
            return 0
        # An event ends only at a line end of the body, so feeding up to each CR or LF of the
        # raw bytes (body or framing) finds the exact byte that completed the N-th event.
        start = 0
        for line_end in _LINE_END.finditer(data):
            self._scan(data[start : line_end.end()])
            start = line_end.end()
            if self.events >= stop_after_events:
                return start
        self._scan(data[start:])
        return None

    def _expect_response(self) -> None:
        self._http.send(h11.Request(method="GET", target="/", headers=[("Host", LOOPBACK)]))
        self._http.send(h11.EndOfMessage())

    def _scan(self, data: bytes) -> None:
        if not data or self._http.their_state is h11.MUST_CLOSE:
            return  # after a response that closes its connection, nothing is a response
        self._http.receive_data(data)
        while True:
            event = self._http.next_event()
            if isinstance(event, h11.Data):
                self.events += len(self._sse.feed(bytes(event.data)))
            elif isinstance(event, h11.Response):
                self._sse = SSEParser()
            elif isinstance(event, h11.EndOfMessage):
                if self._http.their_state is not h11.DONE:
                    return  # MUST_CLOSE: the response closes its connection
                self._http.start_next_cycle()
                self._expect_response()
            elif event is h11.NEED_DATA or event is h11.PAUSED:
                return


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
