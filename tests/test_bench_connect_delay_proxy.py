"""The benches' delaying TCP proxy: it relays, charges each new connection its delay, counts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from bench.connect_delay_proxy import ConnectDelayProxy
from bench.token_upstream import TokenUpstream

DELAY_S = 0.05


class Echo:
    """A target that echoes every line and answers EOF with a last line, then closes."""

    def __init__(self) -> None:
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while line := await reader.readline():
            writer.write(b"echo " + line)
            await writer.drain()
        writer.write(b"bye\n")
        await writer.drain()
        writer.close()


@pytest.fixture
async def echo() -> AsyncIterator[tuple[Echo, int]]:
    target = Echo()
    server = await asyncio.start_server(target.handle, "127.0.0.1", 0, limit=1 << 20)
    async with server:
        yield target, server.sockets[0].getsockname()[1]


async def test_relays_both_ways_and_passes_a_half_close_on(echo: tuple[Echo, int]) -> None:
    target, port = echo
    async with ConnectDelayProxy(target_port=port, delay_s=0.0) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        big = b"x" * 300_000 + b"\n"  # more than a socket buffer: back-pressure on the way
        writer.write(b"hello\n" + big)
        writer.write_eof()
        received = await asyncio.wait_for(reader.read(), 10.0)
        writer.close()
        await writer.wait_closed()

    assert received == b"echo hello\necho " + big + b"bye\n"
    assert proxy.counts() == {"accepted": 1, "connected": 1, "failed": 0}
    assert target.connections == 1


async def test_each_new_connection_waits_the_delay_before_its_first_byte(
    echo: tuple[Echo, int],
) -> None:
    _, port = echo
    async with ConnectDelayProxy(target_port=port, delay_s=DELAY_S) as proxy:
        for _ in range(2):
            began = time.monotonic()
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"ping\n")
            assert await asyncio.wait_for(reader.readline(), 10.0) == b"echo ping\n"
            waited = time.monotonic() - began
            writer.close()
            await writer.wait_closed()
            # Never earlier than the delay (later is fine: the machine is shared).
            assert waited >= DELAY_S - 0.002
        assert proxy.accepted == 2


async def test_keep_alive_requests_pay_the_delay_once_and_count_one_connection() -> None:
    async with (
        TokenUpstream(words=4, first_token_s=0.001, inter_token_s=0.001) as upstream,
        ConnectDelayProxy(target_port=upstream.port, delay_s=DELAY_S) as proxy,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{proxy.port}/v1") as client,
    ):
        for question in ("one", "two", "three"):
            body = {"stream": True, "messages": [{"role": "user", "content": question}]}
            async with client.stream("POST", "/chat/completions", json=body) as response:
                text = (await response.aread()).decode()
            assert text.endswith("data: [DONE]\n\n")
        counts = proxy.counts()
        accepted_upstream = upstream.accepted_connections

    assert counts == {"accepted": 1, "connected": 1, "failed": 0}
    assert accepted_upstream == 1


async def test_a_target_that_refuses_closes_the_clients_connection() -> None:
    free = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = free.sockets[0].getsockname()[1]
    free.close()
    await free.wait_closed()  # nothing listens on `port` now
    async with ConnectDelayProxy(target_port=port, delay_s=0.0) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await asyncio.wait_for(reader.read(), 10.0) == b""
        writer.close()
        counts = proxy.counts()

    assert counts == {"accepted": 1, "connected": 0, "failed": 1}
