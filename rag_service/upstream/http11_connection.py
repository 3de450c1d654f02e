"""One HTTP/1.1 client connection as an ``asyncio.Protocol`` (see ``asyncio_transport``).

The connection carries one exchange at a time. httptools' C parser calls back into it from
``data_received``. Body bytes reach the reader in one of two ways:

- pulled: they are appended to a list and the single waiting reader, if any, is woken;
- pushed (``ResponseBody.push``): a consumer callback gets each piece inside ``data_received``,
  so a streamed answer costs no task wake-up per chunk; the pushing task sleeps until the body
  ends, fails, or the consumer says it has had enough.

Every waiter is a plain future resolved with ``None``: failures are kept in ``_error`` and
raised by the waiting side, so a failure nobody waits for never logs "exception never retrieved".

The read timeout (httpx's: the longest wait for the next bytes) is checked by the pool's one
``StallWatch`` timer against the time of the last read, so an arriving chunk costs one attribute
store instead of arming and cancelling a timer, and an open stream holds no timer of its own.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Protocol, cast

import httptools
import httpx

PoolKey = tuple[str, str, int]

# The response extension holding the body as received: a reader of an uncoded body may iterate
# it directly, without httpx's per-chunk layers (three async generators, a decoder, a chunker).
RAW_BODY_EXTENSION = "rag_service.raw_body"
# Body bytes held for a reader that does not keep up before the socket stops being read.
_HIGH_WATER_BYTES = 256 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})


class BodyConsumer(Protocol):
    """Takes body pieces as they arrive (inside ``data_received``).

    Returns True when it wants no more; an exception it raises ends the push and is raised by
    ``ResponseBody.push`` in the pushing task.
    """

    def __call__(self, data: bytes) -> bool: ...


class ConnectionOwner(Protocol):
    """The pool a connection belongs to (``AsyncioHTTPTransport``).

    Each connection keeps its owner rather than two bound methods of it: thousands of
    connections are open at once, and a bound method costs 64 bytes.
    """

    def release(self, connection: Http11Connection, key: PoolKey) -> None:
        """The response was closed: keep the connection for the next request, or drop it."""

    def forget(self, connection: Http11Connection) -> None:
        """The connection is gone (lost, closed): it no longer counts against the pool."""

    def watch(self, connection: Http11Connection, read_timeout_s: float) -> None:
        """Call ``connection.check_stall`` periodically (``StallWatch.add``)."""

    def unwatch(self, connection: Http11Connection) -> None:
        """Stop calling it (idempotent)."""


class StaleConnection(Exception):
    """A reused connection closed before any byte of the answer: safe to send again."""


class Http11Connection(asyncio.Protocol):
    __slots__ = (
        "_active",
        "_body",
        "_body_bytes",
        "_close_delimited",
        "_complete",
        "_consumer",
        "_consumer_error",
        "_consumer_stopped",
        "_drain",
        "_error",
        "_got_bytes",
        "_head_done",
        "_headers",
        "_keep_alive",
        "_last_read",
        "_loop",
        "_lost",
        "_owner",
        "_parser",
        "_read_paused",
        "_read_timeout",
        "_reason",
        "_status",
        "_transport",
        "_used",
        "_waiter",
        "key",
    )

    def __init__(self, owner: ConnectionOwner) -> None:
        self.key: PoolKey | None = None
        self._owner = owner
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._lost = False
        self._used = False
        self._drain: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._reset_exchange(None)

    def _reset_exchange(self, read_timeout: float | None) -> None:
        self._active = False
        self._status = 0
        self._reason = b""
        # Both lists are made at their first item: a pushed body never fills ``_body``, and
        # after the head no list need stay per open stream.
        self._headers: list[tuple[bytes, bytes]] | None = None
        self._head_done = False
        self._close_delimited = False
        self._body: list[bytes] | None = None
        self._body_bytes = 0
        self._read_paused = False
        self._complete = False
        self._keep_alive = False
        self._got_bytes = False
        self._error: httpx.TransportError | StaleConnection | None = None
        self._consumer: BodyConsumer | None = None
        self._consumer_error: Exception | None = None
        self._consumer_stopped = False
        self._read_timeout = read_timeout
        self._last_read = 0.0

    @property
    def reusable(self) -> bool:
        """The last exchange ended cleanly and the server keeps the connection open."""
        return self._complete and self._keep_alive and not self._lost and self._error is None

    # -- the exchange (called by the transport and the response body) ----------------------------

    async def connect(
        self,
        key: PoolKey,
        ssl_context: ssl.SSLContext | None,
        connect_timeout_s: float | None,
        request: httpx.Request,
    ) -> None:
        self.key = key
        _, host, port = key
        try:
            async with asyncio.timeout(connect_timeout_s):
                await self._loop.create_connection(
                    lambda: self,
                    host,
                    port,
                    ssl=ssl_context,
                    server_hostname=host if ssl_context is not None else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(
                f"no connection to {host}:{port} in time", request=request
            ) from None
        except OSError as exc:
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}", request=request) from exc

    async def exchange(
        self,
        request: httpx.Request,
        write_timeout: float | None,
        read_timeout: float | None,
    ) -> httpx.Response:
        """Send ``request`` and wait for the answer's head; the body is read from the response."""
        reused, self._used = self._used, True
        self._reset_exchange(read_timeout)
        self._active = True
        try:
            await self._write_request(request, write_timeout, reused)
            self._watch_reads()
            while not self._head_done:
                self._raise_error(reused)
                await self._wait()
        except BaseException:
            self.close()
            raise
        body = ResponseBody(self)
        headers, self._headers = self._headers or [], None  # the response keeps its own copy
        reason, self._reason = self._reason, b""
        return httpx.Response(
            self._status,
            headers=headers,
            stream=body,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": reason,
                RAW_BODY_EXTENSION: body,
            },
            request=request,
        )

    def take_body(self) -> bytes:
        body = self._body
        if not body:
            return b""
        data = body[0] if len(body) == 1 else b"".join(body)
        self._body = None
        self._body_bytes = 0
        if self._read_paused and self._transport is not None:
            self._read_paused = False
            self._last_read = self._loop.time()  # the pause was ours: the stall clock restarts
            self._transport.resume_reading()
        return data

    @property
    def body_complete(self) -> bool:
        return self._complete

    def raise_body_error(self) -> None:
        error = self._error
        if error is None:
            return
        if isinstance(error, StaleConnection):  # after the head arrived this cannot be stale
            raise httpx.RemoteProtocolError(str(error))
        raise error

    def next_change(self) -> asyncio.Future[None]:
        """A future resolved at the next body piece, the end of the body or a failure.

        Awaited directly by the body's reader, so a stream waiting for its next token keeps no
        coroutine frame of this class alive.
        """
        waiter = self._waiter = self._loop.create_future()
        return waiter

    def start_push(self, consumer: BodyConsumer) -> None:
        """Hand ``consumer`` the body, from what arrived with the head (or before the push
        began) on, then every later piece at once (see ``ResponseBody.push``)."""
        self._consumer = consumer
        self._consumer_error = None
        self._consumer_stopped = False
        data = self.take_body()
        if data:
            self._push(data)

    def stop_push(self) -> None:
        self._consumer = None

    def push_pending(self) -> bool:
        """True while the pushed body goes on; False once it has ended or the consumer has
        stopped. Raises what the consumer raised, or the transport error that cut the body."""
        if not (self._consumer_stopped or self._complete or self._error is not None):
            return True
        self._consumer = None
        if self._consumer_stopped:
            error, self._consumer_error = self._consumer_error, None
            if error is not None:
                raise error
        elif not self._complete:
            self.raise_body_error()
        return False

    def end_exchange(self) -> None:
        """The response was closed; an unfinished body makes the connection unusable. The
        connection goes back to its owner."""
        self._active = False
        self._consumer = None
        self._unwatch_reads()
        if not self._complete:
            self.close()
        assert self.key is not None
        self._owner.release(self, self.key)

    def close(self) -> None:
        self._unwatch_reads()
        transport = self._transport
        if transport is None or self._lost:
            return
        if transport.get_write_buffer_size():
            transport.abort()  # close() would wait for a peer that does not read to take them
        else:
            transport.close()

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self._active:
            self.close()  # bytes nobody asked for: the connection cannot be trusted any more
            return
        self._last_read = self._loop.time()
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP response from upstream: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._unwatch_reads()
        if self._active and not self._complete and self._error is None:
            if self._head_done and self._close_delimited:
                self._complete = True  # the end of the connection is the end of this body
            elif not self._got_bytes:
                self._error = StaleConnection("the server closed the connection without answering")
            else:
                self._error = httpx.RemoteProtocolError(
                    "the server closed the connection in the middle of the answer"
                )
        self._wake()
        self._wake_drain()
        self._owner.forget(self)

    def pause_writing(self) -> None:
        self._drain = self._loop.create_future()

    def resume_writing(self) -> None:
        self._wake_drain()

    # -- httptools callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._head_done:  # a second answer to one request: the stream cannot be trusted
            self._keep_alive = False
            raise httptools.HttpParserError("bytes after the end of the answer")

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._headers is None:
            self._headers = [(name, value)]
        else:
            self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        if self._status < 200:
            return  # an interim answer (100 Continue): the real head follows
        self._keep_alive = self._parser.should_keep_alive()
        self._close_delimited = self._status not in _NO_BODY_STATUSES and not any(
            name.lower() in (b"content-length", b"transfer-encoding")
            for name, _ in self._headers or ()
        )
        self._head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self._consumer is not None:
            self._push(body)
            return
        if self._body is None:
            self._body = [body]
        else:
            self._body.append(body)
        self._body_bytes += len(body)
        if self._body_bytes > _HIGH_WATER_BYTES and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self._head_done:  # the end of an interim answer
            self._headers = None
            self._reason = b""
            return
        self._complete = True
        self._unwatch_reads()
        self._wake()

    # -- internals --------------------------------------------------------------------------------

    def _push(self, body: bytes) -> None:
        assert self._consumer is not None
        try:
            stop = self._consumer(body)
        except Exception as exc:  # raised again by the pushing task, in its own context
            self._consumer_error = exc
            stop = True
        if stop:
            self._consumer = None
            self._consumer_stopped = True
            self._wake()

    async def _write_request(
        self, request: httpx.Request, write_timeout_s: float | None, reused: bool
    ) -> None:
        head = [request.method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
        for name, value in request.headers.raw:
            head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        self._write(b"".join(head), reused)
        async for part in _body_parts(request):
            if chunked and part:
                part = b"%x\r\n%b\r\n" % (len(part), part)
            self._write(part, reused)
            await self._drained(write_timeout_s, request)
        if chunked:
            self._write(b"0\r\n\r\n", reused)

    def _write(self, data: bytes, reused: bool) -> None:
        if self._lost or self._transport is None or self._transport.is_closing():
            if reused and not self._got_bytes:
                raise StaleConnection("the pooled connection was closed by the server")
            raise httpx.WriteError("the upstream connection closed while sending the request")
        if data:
            self._transport.write(data)

    async def _drained(self, write_timeout_s: float | None, request: httpx.Request) -> None:
        drain = self._drain
        if drain is None or drain.done():
            return
        try:
            async with asyncio.timeout(write_timeout_s):
                await drain
        except TimeoutError:
            raise httpx.WriteTimeout(
                "the upstream did not take the request in time", request=request
            ) from None

    def _raise_error(self, reused: bool) -> None:
        error = self._error
        if error is None:
            return
        if isinstance(error, StaleConnection) and not reused:
            raise httpx.RemoteProtocolError("the server closed the connection without answering")
        raise error

    async def _wait(self) -> None:
        waiter = self._loop.create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_drain(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    def _fail(self, error: httpx.TransportError) -> None:
        if self._error is None and not self._complete:
            self._error = error
        self._unwatch_reads()
        self._wake()

    def _watch_reads(self) -> None:
        timeout = self._read_timeout
        if timeout is not None and not self._complete:
            self._last_read = self._loop.time()
            self._owner.watch(self, timeout)

    def check_stall(self, now: float) -> None:
        """Called by the pool's ``StallWatch``: fail the exchange once no byte has come for the
        read timeout (a socket we paused waits for our reader, not for the upstream)."""
        timeout = self._read_timeout
        if timeout is None or self._complete or self._lost or not self._active:
            self._unwatch_reads()
            return
        if self._read_paused or now - self._last_read < timeout:
            return
        self._fail(httpx.ReadTimeout(f"no bytes from the upstream for {timeout:g} s"))
        self.close()

    def _unwatch_reads(self) -> None:
        self._owner.unwatch(self)


class ResponseBody(httpx.AsyncByteStream):
    """The body of one response; closing it ends the exchange and returns the connection."""

    __slots__ = ("_closed", "_connection")

    def __init__(self, connection: Http11Connection) -> None:
        self._connection = connection
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        while True:
            data = connection.take_body()
            if data:
                yield data
                continue
            if connection.body_complete:
                return
            connection.raise_body_error()
            await connection.next_change()

    async def push(self, consumer: BodyConsumer) -> None:
        """Feed the body to ``consumer`` as it arrives, until it ends or ``consumer`` stops.

        Raises what ``consumer`` raised, or the transport error that cut the body. A reader
        that must not keep a frame of this method per stream runs the same loop itself, on
        ``start_push``, ``push_pending`` and ``next_change``.
        """
        self.start_push(consumer)
        try:
            while self.push_pending():
                await self.next_change()
        finally:
            self._connection.stop_push()

    def start_push(self, consumer: BodyConsumer) -> None:
        """Hand ``consumer`` the body: what has arrived at once, the rest as it arrives."""
        self._connection.start_push(consumer)

    def push_pending(self) -> bool:
        """True while the pushed body goes on (see ``Http11Connection.push_pending``)."""
        return self._connection.push_pending()

    def next_change(self) -> asyncio.Future[None]:
        """A future resolved at the next body piece, the end of the body or a failure."""
        return self._connection.next_change()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._connection.end_exchange()


async def _body_parts(request: httpx.Request) -> AsyncIterator[bytes]:
    stream = request.stream
    if not isinstance(stream, httpx.AsyncByteStream):
        raise httpx.LocalProtocolError(
            "a synchronous request body on an async transport", request=request
        )
    async for part in stream:
        yield part
