"""A fault-injecting OpenAI-compatible streaming server on loopback, for tests and benchmarks.

    async with FaultUpstream([Status(503), CutAfter(3)]) as upstream:
        settings = UpstreamSettings(base_url=upstream.base_url)
        ...  # 1st request: 503, 2nd: cut after 3 text events, later ones: complete answers
        assert upstream.request_count == 3

It is a raw asyncio HTTP/1.1 server, so every byte is under control: it can reset a connection,
cut inside a data line, stall, or send broken JSON. Like a real server it keeps connections alive
for further requests, writes the chunked body's terminator in a write of its own after
``data: [DONE]`` (optionally later, ``AnswerStyle.terminator_delay_s``, as over TLS), and serves
HTTPS when given an ``ssl.SSLContext``; ``connection_count`` counts accepted connections. Each
chat request takes the next fault of the plan (a list, then ``default``) or asks a
callable ``plan(index, body)``. Answers are deterministic functions of the request's messages, so
a replayed request streams the same text, and a request ending in an assistant message marked
``prefix`` (DeepSeek) or with ``continue_final_message`` (vLLM) streams the rest of that answer.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tests.fixture_servers.async_server import LoopbackServer
from tests.fixture_servers.fault_connection import RequestHead, ServerConnection
from tests.fixture_servers.fault_plan import (
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


class FaultUpstream(LoopbackServer):
    """The server; an async context manager. See the module docstring."""

    def __init__(
        self,
        plan: Plan = (),
        *,
        default: Fault = Complete(),
        style: AnswerStyle | None = None,
        host: str = LOOPBACK,
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        keep_alive: bool = True,
    ) -> None:
        super().__init__()
        self.style = style or AnswerStyle()
        self.requests: list[RecordedRequest] = []
        self.connection_count = 0  # accepted so far
        self.open_connections = 0
        self.max_open_connections = 0
        self.keep_alive = keep_alive
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._plan: Plan = plan
        self._default = default
        self._plan_start = 0
        self._chat_requests = 0
        self._handlers: set[asyncio.Task[Any]] = set()
        self._connections: set[ServerConnection] = set()

    @property
    def base_url(self) -> str:
        return self.url_for(self._host)

    def url_for(self, host: str) -> str:
        """The base URL under another name of this host (``localhost``, for a certificate)."""
        return f"{'https' if self._ssl else 'http'}://{host}:{self.port}/v1"

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

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(
            self._handle, self._host, self._port, limit=1 << 20, backlog=4096, ssl=self._ssl
        )

    async def _end_connections(self) -> None:
        for connection in list(self._connections):
            connection.writer.transport.abort()  # wakes every handler; it then ends normally
        handlers = list(self._handlers)
        if handlers:
            _, stuck = await asyncio.wait(handlers, timeout=2.0)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self.connection_count += 1
        self.open_connections += 1
        self.max_open_connections = max(self.max_open_connections, self.open_connections)
        connection = ServerConnection(reader, writer)
        self._connections.add(connection)
        try:
            while (request := await connection.next_request()) is not None:
                if not await self._serve(connection, request) or not self.keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away mid-request
        except ssl.SSLError:
            pass  # a client that refused our certificate, or left without closing TLS
        finally:
            await connection.close()
            self._connections.discard(connection)
            self.open_connections -= 1
            if task is not None:
                self._handlers.discard(task)

    async def _serve(self, connection: ServerConnection, request: RequestHead) -> bool:
        """Answer one request; True when the connection may take another."""
        body = request.body
        self.requests.append(
            RecordedRequest(
                len(self.requests),
                request.method,
                request.path,
                request.headers,
                body,
                time.monotonic(),
            )
        )
        if request.method == "GET" and request.path.endswith("/models"):
            models = {"object": "list", "data": [{"id": "fault-model", "object": "model"}]}
            return await self._send_json(connection, 200, models)
        if request.method == "POST" and request.path.endswith("/chat/completions"):
            return await self._answer(connection, self._next_fault(body), body or {})
        return await self._send_json(connection, 404, error_json("no such route", 404))

    def _next_fault(self, body: dict[str, Any] | None) -> Fault:
        index = self._chat_requests - self._plan_start
        self._chat_requests += 1
        if callable(self._plan):
            return self._plan(index, body)
        return self._plan[index] if index < len(self._plan) else self._default

    async def _answer(
        self, connection: ServerConnection, fault: Fault, body: dict[str, Any]
    ) -> bool:
        if isinstance(fault, Drop):
            if fault.reset:
                connection.reset()
            else:
                connection.writer.close()
            return False
        if isinstance(fault, Status):
            await connection.pause(fault.delay_s)
            payload = fault.body or json.dumps(error_json(fault.message, fault.status)).encode()
            return await self._send_bytes(
                connection, fault.status, payload, "application/json", fault.headers
            )
        if isinstance(fault, WrongContentType):
            return await self._send_bytes(connection, 200, fault.body, fault.content_type, {})
        if isinstance(fault, Complete):
            return await self._stream(connection, body, fault.style or self.style, None)
        return await self._stream(connection, body, self.style, fault)

    async def _send_json(self, connection: ServerConnection, status: int, payload: Any) -> bool:
        return await self._send_bytes(
            connection, status, json.dumps(payload).encode(), "application/json", {}
        )

    async def _send_bytes(
        self,
        connection: ServerConnection,
        status: int,
        payload: bytes,
        content_type: str,
        extra_headers: Mapping[str, str],
    ) -> bool:
        headers = {"Content-Type": content_type, "Content-Length": str(len(payload))}
        await connection.head(status, {**headers, **extra_headers}, keep_alive=self.keep_alive)
        connection.chunked, connection.write_size = False, None
        return await connection.send(payload)

    async def _stream(
        self,
        connection: ServerConnection,
        body: dict[str, Any],
        style: AnswerStyle,
        fault: MidStreamFault | None,
    ) -> bool:
        """Stream an answer (with ``fault``); True when it ended cleanly."""
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        if style.chunked:
            headers["Transfer-Encoding"] = "chunked"
        keep_alive = self.keep_alive and style.chunked  # else the body ends with the connection
        await connection.head(200, headers, keep_alive=keep_alive)
        connection.chunked, connection.write_size = style.chunked, style.write_size
        events = AnswerEvents(style, body)
        if not await connection.send(events.opening()):
            return False
        pieces = continuation_pieces(body, style)
        for index, piece in enumerate(pieces):
            at_fault = fault_position(fault) == index
            if at_fault and not await self._disrupt(connection, fault, events, piece):
                return False
            delay = style.first_token_delay_s if index == 0 else style.inter_token_delay_s
            if not await connection.pause(delay) or not await connection.send(events.text(piece)):
                return False
        at_fault = fault_position(fault) >= len(pieces)
        if at_fault and not await self._disrupt(connection, fault, events, " tail"):
            return False
        if not await connection.send(events.closing(len(pieces))):
            return False
        # As a real server over TLS: the terminator comes after [DONE], in a write of its own.
        if not await connection.pause(style.terminator_delay_s):
            return False
        return await connection.end_body() and keep_alive

    @staticmethod
    async def _disrupt(
        connection: ServerConnection,
        fault: MidStreamFault | None,
        events: AnswerEvents,
        piece: str,
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
