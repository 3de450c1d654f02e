"""Every transport test runs on both event loops the service meets: asyncio's and uvloop's.

uvloop's transports implement ``asyncio.Transport`` without subclassing it, so code that is
right on one loop can break on the other (it happened once already). pytest-asyncio 1.x
parametrizes each async test (and its async fixtures) over the loop factories this hook returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx
import pytest
import uvloop

from rag_service.upstream.asyncio_transport import AsyncioHTTPTransport
from tests.upstream.transport.scripted_server import Handler, ScriptedServer, eventually

# Bounded everywhere, so a broken transport fails a test instead of hanging it.
DEFAULT_TIMEOUT = httpx.Timeout(2.0)


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


class Serve(Protocol):
    def __call__(
        self, handler: Handler, *, ssl_context: ssl.SSLContext | None = None
    ) -> Awaitable[ScriptedServer]: ...


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Starts scripted servers; stops them (and re-raises a failed handler) after the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            handler: Handler, *, ssl_context: ssl.SSLContext | None = None
        ) -> ScriptedServer:
            server = ScriptedServer(handler, ssl_context=ssl_context)
            return await stack.enter_async_context(server)

        yield start


@dataclass
class Pool:
    transport: AsyncioHTTPTransport
    client: httpx.AsyncClient

    async def counts(self, expected: tuple[int, int]) -> tuple[int, int]:
        """(open, idle) once they reach ``expected``, or as they are after a short wait.

        A connection closed on an error leaves the pool when the loop reports it lost, a tick
        or two after the error reached the caller.
        """
        transport = self.transport
        await eventually(
            lambda: (transport.open_connections, transport.idle_connections) == expected, 0.5
        )
        return transport.open_connections, transport.idle_connections


MakePool = Callable[..., Pool]


@pytest.fixture
async def make_pool() -> AsyncIterator[MakePool]:
    """Builds an httpx client on an ``AsyncioHTTPTransport``; closes it after the test."""
    pools: list[Pool] = []

    def build(
        *,
        max_connections: int = 4,
        keepalive_expiry_s: float = 5.0,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
    ) -> Pool:
        transport = AsyncioHTTPTransport(
            max_connections=max_connections,
            keepalive_expiry_s=keepalive_expiry_s,
            ssl_context=ssl_context,
        )
        pool = Pool(transport, httpx.AsyncClient(transport=transport, timeout=timeout))
        pools.append(pool)
        return pool

    yield build
    for pool in pools:
        await pool.client.aclose()
