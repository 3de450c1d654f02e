"""A fault-injecting OpenAI-compatible streaming server on loopback, for tests and benchmarks.

    async with FaultUpstream([Status(503), CutAfter(3)]) as upstream:
        settings = UpstreamSettings(base_url=upstream.base_url)
        ...  # 1st request: 503, 2nd: cut after 3 text events, later ones: complete answers
        assert upstream.request_count == 3

It is a raw asyncio HTTP/1.1 server (one request per connection, ``Connection: close``), so every
byte is under control: it can reset a connection, cut inside a data line, stall, or send broken
JSON. Each chat request takes the next fault of the plan (a list, then ``default``) or asks a
callable ``plan(index, body)``. Answers are deterministic functions of the request's messages, so
a replayed request streams the same text, and a request ending in an assistant message marked
``prefix`` (DeepSeek) or with ``continue_final_message`` (vLLM) streams the rest of that answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from rag_service.testing.fault_plan import (
    AnswerEvents,
    AnswerStyle,
    Complete,
    CutAfter,
    Drop,
    ErrorEvent,
    Fault,
    MalformedJson,
    MidStreamFault,
    Plan,
    Stall,
    Status,
    TruncatedJson,
    WrongContentType,
    answer_text,
    continuation_pieces,
    error_json,
    fault_position,
)

__all__ = [
    "AnswerStyle",
    "Complete",
    "CutAfter",
    "Drop",
    "ErrorEvent",
    "Fault",
    "FaultUpstream",
    "MalformedJson",
    "Plan",
    "RecordedRequest",
    "Stall",
    "Status",
    "TruncatedJson",
    "WrongContentType",
    "answer_text",
]

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class RecordedRequest:
    index: int
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    received_at: float  # time.monotonic()


class _Connection:
    """One accepted connection: response writing, chunk framing, disconnect detection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.chunked = False
        self.write_size: int | None = None
        self._watch: asyncio.Future[bytes] | None = None

    @property
    def gone(self) -> bool:
        return self.writer.is_closing() or (self._watch is not None and self._watch.done())

    async def head(self, status: int, headers: Mapping[str, str]) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await self.writer.drain()

    def watch_for_disconnect(self) -> None:
        """After the request the client sends nothing more: reading EOF means it went away."""
        self._watch = asyncio.ensure_future(self.reader.read(1))

    async def send(self, data: bytes) -> bool:
        """Write body bytes; False when the client is gone."""
        size = self.write_size or len(data) or 1
        for start in range(0, len(data), size):
            if self.gone:
                return False
            piece = data[start : start + size]
            self.writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if self.chunked else piece)
            try:
                await self.writer.drain()
            except ConnectionError:
                return False
        return not self.gone

    async def end_body(self) -> None:
        if self.chunked and not self.gone:
            self.writer.write(b"0\r\n\r\n")
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()

    async def pause(self, seconds: float) -> bool:
        """Sleep, waking early when the client disconnects; False when it is gone."""
        if seconds > 0 and self._watch is not None:
            await asyncio.wait({self._watch}, timeout=seconds)
        elif seconds > 0:
            await asyncio.sleep(seconds)
        return not self.gone

    def reset(self) -> None:
        sock = self.writer.get_extra_info("socket")
        if sock is not None:  # linger 0: close() sends RST instead of FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await self._watch
        if self.gone:
            self.writer.transport.abort()
        else:
            self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), timeout=1.0)
        except (TimeoutError, ConnectionError):
            self.writer.transport.abort()


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429:
            "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}  # fmt: skip


class FaultUpstream:
    """The server; an async context manager. See the module docstring."""

    def __init__(
        self,
        plan: Plan = (),
        *,
        default: Fault = Complete(),
        style: AnswerStyle | None = None,
        host: str = LOOPBACK,
        port: int = 0,
    ) -> None:
        self.style = style or AnswerStyle()
        self.requests: list[RecordedRequest] = []
        self.open_connections = 0
        self.max_open_connections = 0
        self._host = host
        self._port = port
        self._plan: Plan = plan
        self._default = default
        self._plan_start = 0
        self._chat_requests = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._connections: set[_Connection] = set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FaultUpstream is not running")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}/v1"

    @property
    def request_count(self) -> int:
        return len(self.requests)

    def set_plan(self, plan: Plan, *, default: Fault | None = None) -> None:
        """Apply ``plan`` from the next chat request on (its index counts from there)."""
        self._plan = plan
        self._plan_start = self._chat_requests
        if default is not None:
            self._default = default

    def answer_text(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The complete answer a request with ``messages`` gets (in the server's style)."""
        return answer_text(messages, self.style)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self._host, self._port, limit=1 << 20, backlog=4096
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.writer.transport.abort()  # wakes every handler; it then ends normally
        handlers = list(self._handlers)
        if handlers:
            _, stuck = await asyncio.wait(handlers, timeout=2.0)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FaultUpstream:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self.open_connections += 1
        self.max_open_connections = max(self.max_open_connections, self.open_connections)
        connection = _Connection(reader, writer)
        self._connections.add(connection)
        try:
            await self._serve(connection)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away mid-request
        finally:
            await connection.close()
            self._connections.discard(connection)
            self.open_connections -= 1
            if task is not None:
                self._handlers.discard(task)

    async def _serve(self, connection: _Connection) -> None:
        head = await connection.reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        method, path, _version = request_line.split(" ", 2)
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines)
        }
        length = int(headers.get("content-length", "0") or 0)
        raw_body = await connection.reader.readexactly(length) if length else b""
        body = json_object(raw_body)
        connection.watch_for_disconnect()
        self.requests.append(
            RecordedRequest(len(self.requests), method, path, headers, body, time.monotonic())
        )
        if method == "GET" and path.endswith("/models"):
            models = {"object": "list", "data": [{"id": "fault-model", "object": "model"}]}
            await self._send_json(connection, 200, models)
        elif method == "POST" and path.endswith("/chat/completions"):
            await self._answer(connection, self._next_fault(body), body or {})
        else:
            await self._send_json(connection, 404, error_json("no such route", 404))

    def _next_fault(self, body: dict[str, Any] | None) -> Fault:
        index = self._chat_requests - self._plan_start
        self._chat_requests += 1
        if callable(self._plan):
            return self._plan(index, body)
        return self._plan[index] if index < len(self._plan) else self._default

    async def _answer(self, connection: _Connection, fault: Fault, body: dict[str, Any]) -> None:
        if isinstance(fault, Drop):
            if fault.reset:
                connection.reset()
            else:
                connection.writer.close()
        elif isinstance(fault, Status):
            await connection.pause(fault.delay_s)
            payload = fault.body or json.dumps(error_json(fault.message, fault.status)).encode()
            await self._send_bytes(
                connection, fault.status, payload, "application/json", fault.headers
            )
        elif isinstance(fault, WrongContentType):
            await self._send_bytes(connection, 200, fault.body, fault.content_type, {})
        elif isinstance(fault, Complete):
            await self._stream(connection, body, fault.style or self.style, None)
        else:
            await self._stream(connection, body, self.style, fault)

    async def _send_json(self, connection: _Connection, status: int, payload: Any) -> None:
        await self._send_bytes(
            connection, status, json.dumps(payload).encode(), "application/json", {}
        )

    @staticmethod
    async def _send_bytes(
        connection: _Connection,
        status: int,
        payload: bytes,
        content_type: str,
        extra_headers: Mapping[str, str],
    ) -> None:
        headers = {"Content-Type": content_type, "Content-Length": str(len(payload))}
        await connection.head(status, {**headers, **extra_headers})
        await connection.send(payload)

    async def _stream(
        self,
        connection: _Connection,
        body: dict[str, Any],
        style: AnswerStyle,
        fault: MidStreamFault | None,
    ) -> None:
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        if style.chunked:
            headers["Transfer-Encoding"] = "chunked"
        await connection.head(200, headers)
        connection.chunked, connection.write_size = style.chunked, style.write_size
        events = AnswerEvents(style, body)
        if not await connection.send(events.opening()):
            return
        pieces = continuation_pieces(body, style)
        for index, piece in enumerate(pieces):
            at_fault = fault_position(fault) == index
            if at_fault and not await self._disrupt(connection, fault, events, piece):
                return
            delay = style.first_token_delay_s if index == 0 else style.inter_token_delay_s
            if not await connection.pause(delay) or not await connection.send(events.text(piece)):
                return
        at_fault = fault_position(fault) >= len(pieces)
        if at_fault and not await self._disrupt(connection, fault, events, " tail"):
            return
        if await connection.send(events.closing(len(pieces))):
            await connection.end_body()

    @staticmethod
    async def _disrupt(
        connection: _Connection, fault: MidStreamFault | None, events: AnswerEvents, piece: str
    ) -> bool:
        """Apply a mid-stream fault; True when the answer goes on afterwards."""
        if fault is None:
            return True
        if isinstance(fault, Stall):
            return await connection.pause(fault.seconds)
        if isinstance(fault, MalformedJson):
            return await connection.send(events.raw('{"choices": [{"delta": {"content": "x"'))
        if isinstance(fault, ErrorEvent):
            error = json.dumps(error_json(fault.message, 500))
            await connection.send(events.raw(error, name="error" if fault.named else ""))
            await connection.end_body()
            return False
        if isinstance(fault, TruncatedJson):
            await connection.send(b'data: {"choices": [{"index": 0, "delta": {"cont')
        elif fault.mid_line:
            line = events.text(piece)
            await connection.send(line[: max(1, len(line) // 2)])
        connection.writer.close()
        return False


def json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None
