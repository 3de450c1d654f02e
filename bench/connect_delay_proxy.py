"""A TCP proxy on loopback that charges every new connection a set-up delay, and counts them.

    async with ConnectDelayProxy(target_port=upstream.port, delay_s=0.06) as proxy:
        ...  # connect to proxy.port instead of upstream.port
        proxy.accepted  # connections accepted so far

A real upstream is across a network and speaks TLS, so a new connection costs a TCP and a TLS
handshake: 60 ms or more across a region. On loopback a connection is free, and a client that
opens one per request looks as fast as one that keeps its connections. Behind this proxy it
does not: the proxy accepts a connection, waits ``delay_s``, then connects to the target and
relays the bytes both ways, unchanged, each read written on at once (so that the target's write
boundaries, e.g. ``[DONE]`` before the chunked terminator, reach the client as far as TCP keeps
them). Client bytes that arrive during the delay wait in the socket (reading is paused).

Back-pressure: when one side's write buffer fills up, reading from the other side pauses until
it drains. A half-close (EOF) is passed on; when either side's connection is lost, the other is
closed once its buffered bytes are written. Runs on asyncio or uvloop, in-process (tests) or as
a child process (``python -m bench.stream_children proxy``).
"""

from __future__ import annotations

import asyncio
from typing import cast

from tests.fixture_servers.async_server import LoopbackServer

LOOPBACK = "127.0.0.1"
LISTEN_BACKLOG = 8192  # the benches open thousands of connections within seconds


class _Half(asyncio.Protocol):
    """One socket of a proxied connection: what it reads is written to its peer."""

    def __init__(self, proxy: ConnectDelayProxy, *, accepted: bool) -> None:
        self._proxy = proxy
        self._accepted = accepted  # the client's side (else the target's)
        self.transport: asyncio.Transport | None = None
        self.peer: _Half | None = None
        self._early: list[bytes] = []  # read before the peer exists (a target that speaks first)
        self._early_eof = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but they implement it.
        self.transport = cast(asyncio.Transport, transport)
        self._proxy.halves.add(self)
        if self._accepted:
            self.transport.pause_reading()  # until the target is connected
            self._proxy.connect_onwards(self)

    def link(self, peer: _Half) -> None:
        """Pair with ``peer`` and pass on what arrived before it existed."""
        self.peer = peer
        for data in self._early:
            peer.write(data)
        self._early.clear()
        if self._early_eof:
            peer.write_eof()

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            self._early.append(data)
        else:
            self.peer.write(data)

    def eof_received(self) -> bool:
        if self.peer is None:
            self._early_eof = True
        else:
            self.peer.write_eof()
        return True  # keep our writing side open: the peer may still answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.transport = None
        self._proxy.halves.discard(self)
        if self.peer is not None:
            self.peer.close()

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.resume_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def write_eof(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.transport.can_write_eof():
            self.transport.write_eof()
        else:
            self.transport.close()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()  # after the buffered bytes are written

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class ConnectDelayProxy(LoopbackServer):
    """The proxy; an async context manager. See the module docstring."""

    def __init__(
        self,
        *,
        target_port: int,
        delay_s: float,
        target_host: str = LOOPBACK,
        host: str = LOOPBACK,
        port: int = 0,
    ) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.accepted = 0  # connections accepted from clients
        self.connected = 0  # connections made onwards to the target
        self.failed = 0  # onward connections that could not be made (the client's is closed)
        self.halves: set[_Half] = set()
        self._target = (target_host, target_port)
        self._address = (host, port)
        self._linking: set[asyncio.Task[None]] = set()

    def counts(self) -> dict[str, int]:
        return {"accepted": self.accepted, "connected": self.connected, "failed": self.failed}

    async def _listen(self) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        host, port = self._address
        return await loop.create_server(
            lambda: _Half(self, accepted=True), host, port, backlog=LISTEN_BACKLOG
        )

    async def _end_connections(self) -> None:
        for task in list(self._linking):
            task.cancel()
        await asyncio.gather(*self._linking, return_exceptions=True)
        for half in list(self.halves):
            half.abort()

    def connect_onwards(self, client: _Half) -> None:
        """Called when a client connection is accepted: link it to the target after the delay."""
        self.accepted += 1
        task = asyncio.get_running_loop().create_task(self._link(client))
        self._linking.add(task)
        task.add_done_callback(self._linking.discard)

    async def _link(self, client: _Half) -> None:
        loop = asyncio.get_running_loop()
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        if client.lost:
            return
        host, port = self._target
        try:
            _, target = await loop.create_connection(
                lambda: _Half(self, accepted=False), host, port
            )
        except OSError:
            self.failed += 1
            client.close()
            return
        self.connected += 1
        client.link(target)
        target.link(client)
        if client.lost:
            target.close()
        else:
            client.resume_reading()
