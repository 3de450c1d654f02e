"""``AsyncioHTTPTransport``'s pool: the connection limit, waiters, accounting and ``aclose``.

Runs on asyncio and uvloop (``conftest``); the server scripts its exact bytes.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.upstream.transport.conftest import MakePool, Serve
from tests.upstream.transport.scripted_server import (
    Peer,
    answer_every_request,
    answer_in_turn,
    eventually,
    response,
)

OK = response(b"ok")
OPEN_ENDED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"


def pool_timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(2.0, pool=seconds)


async def open_stream(client: httpx.AsyncClient, url: str) -> httpx.Response:
    """A response whose head arrived and whose body is still open (the caller closes it)."""
    return await client.send(client.build_request("GET", url), stream=True)


async def until_waiting(transport: object, waiters: int) -> None:
    """Until ``waiters`` requests wait for a slot: a test of order needs them queued first."""
    queued = await eventually(lambda: len(getattr(transport, "_slot_waiters")) >= waiters)  # noqa: B009
    assert queued, f"fewer than {waiters} requests wait for a slot"


# -- the connection limit ---------------------------------------------------------------------------


async def test_a_full_pool_raises_pool_timeout_and_recovers(
    serve: Serve, make_pool: MakePool
) -> None:
    server = await serve(answer_in_turn(OPEN_ENDED, then=OK))
    pool = make_pool(max_connections=1, timeout=pool_timeout(0.2))

    busy = await open_stream(pool.client, server.url)
    with pytest.raises(httpx.PoolTimeout):
        await pool.client.get(server.url)
    await busy.aclose()  # an unfinished body: its connection is dropped, the slot freed
    after = await pool.client.get(server.url)

    assert after.content == b"ok"
    assert len(server.peers) == 2
    assert await pool.counts((1, 1)) == (1, 1)


async def test_a_waiting_request_gets_the_connection_handed_back(
    serve: Serve, make_pool: MakePool
) -> None:
    server = await serve(answer_every_request(response(b"first"), response(b"second")))
    pool = make_pool(max_connections=1, timeout=pool_timeout(1.0))

    first = await open_stream(pool.client, server.url)
    waiting = asyncio.create_task(pool.client.get(server.url))
    await until_waiting(pool.transport, 1)
    assert await first.aread() == b"first"
    await first.aclose()
    second = await waiting

    assert second.content == b"second"
    assert len(server.peers) == 1  # the waiter took the very connection the first one released


async def test_a_cancelled_waiter_passes_its_turn_on(serve: Serve, make_pool: MakePool) -> None:
    server = await serve(answer_every_request(response(b"first"), response(b"second")))
    pool = make_pool(max_connections=1, timeout=pool_timeout(0.5))

    first = await open_stream(pool.client, server.url)
    cancelled = asyncio.create_task(pool.client.get(server.url))
    await until_waiting(pool.transport, 1)
    patient = asyncio.create_task(pool.client.get(server.url))
    await until_waiting(pool.transport, 2)
    await first.aread()
    await first.aclose()  # wakes the first waiter ...
    cancelled.cancel()  # ... which is cancelled (its client went away) before it runs

    with pytest.raises(asyncio.CancelledError):
        await cancelled
    second = await patient
    assert second.content == b"second"


async def test_concurrent_requests_never_open_more_than_the_limit(
    serve: Serve, make_pool: MakePool
) -> None:
    async def slow_ok(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await asyncio.sleep(0.02)
            await peer.send(OK)

    server = await serve(slow_ok)
    pool = make_pool(max_connections=2)

    answers = await asyncio.gather(*(pool.client.get(f"{server.url}/{n}") for n in range(6)))

    assert [answer.content for answer in answers] == [b"ok"] * 6
    assert len(server.peers) == 2
    assert sorted(request.target for peer in server.peers for request in peer.requests) == [
        f"/{n}" for n in range(6)
    ]
    assert await pool.counts((2, 2)) == (2, 2)


async def test_a_full_pool_closes_an_idle_connection_to_another_host(
    serve: Serve, make_pool: MakePool
) -> None:
    first_host = await serve(answer_every_request(OK))
    second_host = await serve(answer_every_request(OK))
    pool = make_pool(max_connections=1)

    await pool.client.get(first_host.url)
    await pool.client.get(second_host.url)

    async with asyncio.timeout(1):
        await first_host.peers[0].closed_by_client.wait()
    assert await pool.counts((1, 1)) == (1, 1)


# -- write timeouts -------------------------------------------------------------------------------


async def test_a_write_timeout_frees_the_connection(serve: Serve, make_pool: MakePool) -> None:
    async def never_reads_then_ok(peer: Peer) -> None:
        if len(server.peers) == 1:
            await asyncio.Event().wait()  # reads nothing: the client's send buffer fills
        while await peer.read_request() is not None:
            await peer.send(OK)

    server = await serve(never_reads_then_ok)
    pool = make_pool(max_connections=1, timeout=httpx.Timeout(2.0, write=0.2, pool=0.5))

    with pytest.raises(httpx.WriteTimeout):
        await pool.client.post(server.url, content=bytes(32 * 1024 * 1024))
    assert await pool.counts((0, 0)) == (0, 0)
    after = await pool.client.get(server.url)

    assert after.content == b"ok"


# -- aclose -----------------------------------------------------------------------------------------


async def test_aclose_closes_every_socket_and_refuses_new_requests(
    serve: Serve, make_pool: MakePool
) -> None:
    server = await serve(answer_in_turn(OK, OPEN_ENDED, then=OK))
    pool = make_pool()
    done = await open_stream(pool.client, server.url)  # holds the first connection ...
    busy = await open_stream(pool.client, server.url)  # ... so this one opens a second
    assert await done.aread() == b"ok"  # read to the end: the first connection goes idle
    assert (pool.transport.open_connections, pool.transport.idle_connections) == (2, 1)

    await pool.transport.aclose()

    async with asyncio.timeout(1):
        for peer in server.peers:
            await peer.closed_by_client.wait()
    with pytest.raises(httpx.RemoteProtocolError):
        await busy.aread()
    await busy.aclose()
    with pytest.raises(httpx.ConnectError):
        await pool.client.get(server.url)
    assert (pool.transport.open_connections, pool.transport.idle_connections) == (0, 0)


async def test_aclose_fails_a_request_waiting_for_a_slot(serve: Serve, make_pool: MakePool) -> None:
    server = await serve(answer_in_turn(OPEN_ENDED, then=OK))
    pool = make_pool(max_connections=1, timeout=pool_timeout(1.0))
    busy = await open_stream(pool.client, server.url)
    waiting = asyncio.create_task(pool.client.get(server.url))
    await until_waiting(pool.transport, 1)

    await pool.transport.aclose()

    with pytest.raises(httpx.ConnectError, match="closed"):
        await waiting
    await busy.aclose()
    assert (pool.transport.open_connections, pool.transport.idle_connections) == (0, 0)
