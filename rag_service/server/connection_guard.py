"""What uvicorn does not limit: how long a request's headers may take, and how many connections
one process holds open.

uvicorn's ``timeout_keep_alive`` runs only between requests, and ``limit_concurrency`` answers
503 only once a request's headers are complete, so a connection that sends nothing, or half its
headers, stays open for ever and is never refused. ``ConnectionGuard`` closes that gap with
uvicorn's documented extension point, ``uvicorn.Config(http=<protocol class>)``: its protocol
class wraps the one uvicorn would have picked (composition: uvicorn's constructor arguments are
forwarded untouched, and every protocol callback is delegated) and adds

- a cap: past ``max_connections`` open connections, a new one gets a short canned 503 (our JSON
  error body, ``Retry-After``, ``Connection: close``) and never reaches uvicorn's protocol;
- a header timer: armed when a connection opens and again when a response ends, disarmed when
  a request reaches the app; when it fires, the connection is closed without an answer.

"The request reached the app" comes from ``ConnectionLink``, an ASGI middleware. It finds its
connection through a context variable: ``data_received`` sets it around uvicorn's parser, and
uvicorn creates a request's task from inside that call (or, for a pipelined request, from the
previous request's task), so the task's context (copied at creation, as asyncio documents) names
the connection. Nothing is done per write: one extra call per ``data_received`` and two per
request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextvars import ContextVar
from typing import Any, cast

from rag_service.errors import ServiceUnavailable

log = logging.getLogger("rag_service.server")

REFUSAL_RETRY_AFTER_S = 1

# The key by which a request's task finds its connection; the value lives in each task's own
# context. Created once at module level, as the contextvars documentation asks.
_CONNECTION: ContextVar[GuardedConnection | None] = ContextVar(
    "rag_service_connection", default=None
)


def refusal_response(max_connections: int) -> bytes:
    """The bytes of the 503 a connection past the cap gets, with the service's JSON error."""
    error = ServiceUnavailable(
        f"the server holds its maximum of {max_connections} connections; try again shortly",
        retry_after_s=REFUSAL_RETRY_AFTER_S,
    )
    body = json.dumps({"error": error.to_payload()}).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"retry-after: {REFUSAL_RETRY_AFTER_S}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class ConnectionGuard:
    """One server's limits and open-connection count; ``protocol_class`` goes to uvicorn."""

    def __init__(
        self,
        inner: type[asyncio.Protocol],
        *,
        header_timeout_s: float,
        max_connections: int,
    ) -> None:
        self.inner = inner
        self.header_timeout_s = header_timeout_s
        self.max_connections = max_connections
        self.open_connections = 0
        self.refusal = refusal_response(max_connections)
        self.refusing = False  # to log the start of a refusal period once, not every refusal
        self.protocol_class = self._protocol_class()

    def _protocol_class(self) -> type[asyncio.Protocol]:
        guard = self

        class GuardedHTTPProtocol(GuardedConnection):
            """uvicorn builds one per connection with keyword arguments; this binds the guard."""

            inner_protocol_class = guard.inner
            connection_guard = guard  # the count and limits, for whoever holds the config

            def __init__(self, **uvicorn_arguments: Any) -> None:
                super().__init__(guard, uvicorn_arguments)

        return GuardedHTTPProtocol

    def admit(self) -> bool:
        if self.open_connections >= self.max_connections:
            if not self.refusing:
                self.refusing = True
                log.warning(
                    "%d connections open: refusing new ones with 503 (RAG_SERVER__MAX_CONNECTIONS)",
                    self.open_connections,
                )
            return False
        self.open_connections += 1
        self.refusing = False
        return True


class GuardedConnection(asyncio.Protocol):
    """One client connection: uvicorn's protocol inside, the header timer and the cap around."""

    inner_protocol_class: type[asyncio.Protocol]

    def __init__(self, guard: ConnectionGuard, uvicorn_arguments: dict[str, Any]) -> None:
        self._guard = guard
        self._uvicorn_arguments = uvicorn_arguments
        self._inner: asyncio.Protocol | None = None  # None: refused (or not connected yet)
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._requests = 0  # requests of this connection the app is running

    # The protocol interface, delegated to uvicorn's protocol.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP transport, though uvloop's does not derive from asyncio.Transport.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        if not self._guard.admit():
            self._refuse(transport)
            return
        # Built only when admitted: a refused connection costs no parser.
        self._inner = self._guard.inner(**self._uvicorn_arguments)
        self._inner.connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        inner = self._inner
        if inner is None:
            return  # a refused connection: whatever it sends is read and dropped
        token = _CONNECTION.set(self)
        try:
            inner.data_received(data)
        finally:
            _CONNECTION.reset(token)

    def eof_received(self) -> bool | None:
        if self._inner is None:
            return None  # a refused client read our 503 and left: close
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._inner is not None:
            self._guard.open_connections -= 1
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    # What ConnectionLink reports.

    def request_started(self) -> None:
        """A request's headers are complete and the app runs it: the header limit is met."""
        self._requests += 1
        self._disarm()

    def request_ended(self) -> None:
        """The app is done with a request: the next one's headers are on the clock."""
        self._requests -= 1
        transport = self._transport
        if not self._requests and transport is not None and not transport.is_closing():
            self._arm()

    # The header timer and the refusal.

    def _arm(self) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._guard.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_too_slow(self) -> None:
        self._timer = None
        transport = self._transport
        assert transport is not None
        # close() would wait to flush what a client that does not read never takes: a previous
        # response, or our 503. Then only abort() frees the connection.
        if transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()

    def _refuse(self, transport: asyncio.Transport) -> None:
        transport.write(self._guard.refusal)
        if transport.can_write_eof():
            # Half-close and read on until the client closes: closing with its request unread
            # would send a reset, which can destroy our 503 before the client reads it.
            transport.write_eof()
            self._arm()  # a client that never closes is cut off like a slow one
        else:
            transport.close()


class ConnectionLink:
    """ASGI middleware, outermost: tells the request's connection when the app starts and ends
    a request. Requests not served through ``GuardedConnection`` pass through untouched."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        connection = _CONNECTION.get()
        if connection is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        connection.request_started()
        try:
            await self.app(scope, receive, send)
        finally:
            connection.request_ended()
