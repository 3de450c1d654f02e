"""ShardedTransport: the upstream's connections spread over several small httpx pools.

httpcore's connection pool does work proportional to its size each time it assigns or releases
a connection (encode/httpcore#1035). With one pool of 1,000 connections, a wave of failing
streams kept the event loop busy for ~19 s in the thundering-herd benchmark, delaying every
other request and ping of the process. Pools of at most ``shard_size`` keep that cost bounded;
a request goes to the pool with the fewest requests in flight.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable

import httpx

DEFAULT_SHARD_SIZE = 100


class ShardedTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_connections: int, shard_size: int = DEFAULT_SHARD_SIZE) -> None:
        self._max_shards = max(1, math.ceil(max_connections / shard_size))
        self._per_shard = math.ceil(max_connections / self._max_shards)
        # One TLS context for all pools: building one per pool costs milliseconds each.
        self._ssl = httpx.create_ssl_context()
        self._pools: list[httpx.AsyncHTTPTransport] = []
        self._in_flight: list[int] = []
        self._add_pool()

    @property
    def in_flight(self) -> tuple[int, ...]:
        return tuple(self._in_flight)

    def _add_pool(self) -> None:
        limits = httpx.Limits(
            max_connections=self._per_shard, max_keepalive_connections=self._per_shard
        )
        self._pools.append(httpx.AsyncHTTPTransport(limits=limits, verify=self._ssl))
        self._in_flight.append(0)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = min(range(len(self._pools)), key=self._in_flight.__getitem__)
        if self._in_flight[index] >= self._per_shard and len(self._pools) < self._max_shards:
            self._add_pool()  # pools are opened as load needs them
            index = len(self._pools) - 1
        self._in_flight[index] += 1
        try:
            response = await self._pools[index].handle_async_request(request)
        except BaseException:
            self._in_flight[index] -= 1
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _ReleasingStream(response.stream, lambda: self._release(index))
        return response

    def _release(self, index: int) -> None:
        self._in_flight[index] -= 1

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


class _ReleasingStream(httpx.AsyncByteStream):
    """A response body that tells its shard when it is closed (once)."""

    def __init__(self, inner: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()
