"""``AsyncioHTTPTransport``: httpx's transport for the upstream, on asyncio protocols + httptools.

httpx stays the client (requests, responses, timeouts, errors); this replaces only the layer
below it, httpcore. A streamed answer is thousands of small chunks per second per process, and
httpcore reads each one through an anyio cancel scope, h11's event machine and a stack of async
generators: about 96 µs of CPU and 20 KB of memory per stream in the concurrency benchmark
(docs/benchmarks.md). Here each connection is one ``asyncio.Protocol``: the C parser of
httptools (the one uvicorn uses) decodes the response framing inside ``data_received``, the body
waits in a list until the reader takes it, and the read timeouts of all connections are checked
by one periodic timer (``StallWatch``) rather than one timer per read or per connection.

Scope: HTTP/1.1 over TCP or TLS, keep-alive with a bounded pool, request bodies of any httpx
kind, ``Content-Length``, chunked or close-delimited response bodies. Not supported: HTTP/2,
proxies, ``Upgrade``, ``HEAD`` (a body-less response to it would look truncated).

Failures are raised as httpx's own exceptions (``ConnectError``, ``ConnectTimeout``,
``ReadTimeout``, ``RemoteProtocolError``, ``PoolTimeout`` ...), exactly as from httpx's default
transport, so ``classify`` translates them the same way.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator

import httpx

from rag_service.upstream.http11_connection import Http11Connection, PoolKey, StaleConnection
from rag_service.upstream.stall_watch import StallWatch

_DEFAULT_PORTS = {"http": 80, "https": 443}


class AsyncioHTTPTransport(httpx.AsyncBaseTransport):
    """A keep-alive pool of at most ``max_connections`` HTTP/1.1 connections."""

    def __init__(
        self,
        *,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_expiry_s: float = 5.0,
    ) -> None:
        self._max_connections = max_connections
        self._ssl_context = ssl_context
        self._keepalive_expiry_s = keepalive_expiry_s
        # Per host, idle connections with the time they became idle (insertion order: LRU first).
        self._idle: dict[PoolKey, dict[Http11Connection, float]] = {}
        self._open: set[Http11Connection] = set()
        self._slot_waiters: dict[asyncio.Future[None], None] = {}
        self._stall_watch = StallWatch()
        self._closed = False

    @property
    def open_connections(self) -> int:
        """Connections counted against ``max_connections``: busy and idle."""
        return len(self._open)

    @property
    def idle_connections(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    @property
    def watched_connections(self) -> int:
        """Connections whose read timeout is being checked: those waiting for bytes."""
        return len(self._stall_watch)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise httpx.ConnectError("the upstream transport is closed", request=request)
        key = _pool_key(request)
        timeouts = request.extensions.get("timeout", {})
        write, read = timeouts.get("write"), timeouts.get("read")
        connection = await self._acquire(key, timeouts, request, reuse=True)
        try:
            return await connection.exchange(request, write, read)
        except StaleConnection as exc:
            # Only a reused connection raises it: the server had already closed it and the
            # request got no answer, so one fresh connection may carry it (what browsers do in
            # this race), if its body can be sent again.
            if not isinstance(request.stream, httpx.ByteStream | ReleasableBody):
                raise httpx.RemoteProtocolError(str(exc), request=request) from None
        connection = await self._acquire(key, timeouts, request, reuse=False)
        return await connection.exchange(request, write, read)

    async def aclose(self) -> None:
        self._closed = True
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()
        self._stall_watch.close()
        for waiter in self._slot_waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- the pool ---------------------------------------------------------------------------------

    async def _acquire(
        self,
        key: PoolKey,
        timeouts: dict[str, float | None],
        request: httpx.Request,
        *,
        reuse: bool,
    ) -> Http11Connection:
        pooled = self._take_idle(key) if reuse else None
        if pooled is not None:
            return pooled
        if len(self._open) >= self._max_connections and not self._evict_one_idle():
            pooled = await self._wait_for_slot(key, timeouts.get("pool"), request, reuse=reuse)
            if pooled is not None:
                return pooled
        connection = Http11Connection(self)
        self._open.add(connection)
        try:
            await connection.connect(key, self._ssl_for(key), timeouts.get("connect"), request)
        except BaseException:
            self.forget(connection)
            connection.close()
            raise
        return connection

    async def _wait_for_slot(
        self, key: PoolKey, pool_timeout_s: float | None, request: httpx.Request, *, reuse: bool
    ) -> Http11Connection | None:
        """Wait for a free slot (None) or an idle connection to ``key``; ``PoolTimeout``."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(pool_timeout_s):
                while True:
                    waiter = loop.create_future()
                    self._slot_waiters[waiter] = None
                    try:
                        await waiter
                    except asyncio.CancelledError:
                        if waiter.done() and not waiter.cancelled():
                            self._wake_slot_waiter()  # woken, then cancelled: pass the turn on
                        raise
                    finally:
                        del self._slot_waiters[waiter]
                    if self._closed:
                        raise httpx.ConnectError(
                            "the upstream transport is closed", request=request
                        )
                    pooled = self._take_idle(key) if reuse else None
                    if pooled is not None:
                        return pooled
                    if len(self._open) < self._max_connections or self._evict_one_idle():
                        return None
        except TimeoutError:
            self._wake_slot_waiter()  # a slot freed for this waiter goes to the next one
            raise httpx.PoolTimeout(
                f"all {self._max_connections} upstream connections are busy", request=request
            ) from None

    def _take_idle(self, key: PoolKey) -> Http11Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection, since = idle.popitem()  # the most recently used: its socket is warm
            if connection.reusable and now - since < self._keepalive_expiry_s:
                return connection
            self.forget(connection)
            connection.close()
        return None

    def _evict_one_idle(self) -> bool:
        """Close an idle connection (to any host) to make room; False when none is idle."""
        for idle in self._idle.values():
            if idle:
                connection, _ = idle.popitem()
                self.forget(connection)
                connection.close()
                return True
        return False

    def release(self, connection: Http11Connection, key: PoolKey) -> None:
        """The response was closed: keep the connection for the next request, or drop it."""
        if connection.reusable and not self._closed:
            self._idle.setdefault(key, {})[connection] = time.monotonic()
            self._wake_slot_waiter()
            return
        self.forget(connection)
        connection.close()

    def forget(self, connection: Http11Connection) -> None:
        """The connection is gone (lost, closed): it no longer counts against the pool."""
        if connection not in self._open:
            return
        self._open.discard(connection)
        if connection.key is not None:
            idle = self._idle.get(connection.key)
            if idle is not None:
                idle.pop(connection, None)
        self._wake_slot_waiter()

    def watch(self, connection: Http11Connection, read_timeout_s: float) -> None:
        self._stall_watch.add(connection, read_timeout_s)

    def unwatch(self, connection: Http11Connection) -> None:
        self._stall_watch.discard(connection)

    def _wake_slot_waiter(self) -> None:
        for waiter in self._slot_waiters:
            if not waiter.done():
                waiter.set_result(None)
                return

    def _ssl_for(self, key: PoolKey) -> ssl.SSLContext | None:
        if key[0] != "https":
            return None
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context


def _pool_key(request: httpx.Request) -> PoolKey:
    url = request.url
    if url.scheme not in _DEFAULT_PORTS:
        raise httpx.UnsupportedProtocol(
            f"the upstream URL must be http or https, not {url.scheme!r}", request=request
        )
    return (url.scheme, url.host, url.port or _DEFAULT_PORTS[url.scheme])


class ReleasableBody(httpx.AsyncByteStream):
    """A request body that can be sent again until it is released.

    httpx keeps a request's body for as long as its response lives; for a streamed answer that is
    a copy of the whole prompt per open stream. Releasing it once the answer's head has arrived
    frees that memory, while a retry on a fresh connection before that still has the bytes.
    """

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __len__(self) -> int:
        return len(self._data)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._data

    def release(self) -> None:
        self._data = b""
