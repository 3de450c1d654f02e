"""A raw HTTP/1.1 server on loopback that answers with the exact bytes each test scripts.

Every accepted connection is a ``Peer`` handed to the test's handler coroutine, which reads the
requests (parsed here just enough to check them: head, Content-Length or chunked body) and
writes whatever bytes it likes, including broken ones. The server records every connection and
request, and after the handler returns keeps reading the connection until the client closes it,
so a test can see when the client let a socket go (``Peer.closed_by_client``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType

WAIT_S = 2.0  # the longest any helper here waits: a broken test fails instead of hanging


async def eventually(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    """Whether ``condition`` became true within ``timeout_s`` (checked every 5 ms)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while not condition():  # noqa: ASYNC110 - state of sockets and pools, no event to wait on
                await asyncio.sleep(0.005)
    return condition()


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes  # the request exactly as it came off the wire, framing included

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return values[0] if values else None


class Peer:
    """One accepted connection, driven by the test's handler."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.requests: list[ReceivedRequest] = []
        self.closed_by_client = asyncio.Event()

    async def read_request(self) -> ReceivedRequest | None:
        """The next request, or None when the client closes the connection first."""
        try:
            async with asyncio.timeout(WAIT_S):
                return await self._read_request()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client.set()
            return None

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        async with asyncio.timeout(WAIT_S):
            await self.writer.drain()

    async def close(self) -> None:
        """Close after sending what was written (a FIN, not a reset)."""
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()

    async def linger(self) -> None:
        """Read (and drop) anything more until the client closes the connection."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass
        self.closed_by_client.set()

    async def _read_request(self) -> ReceivedRequest:
        head = await self.reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ")
        headers = [_split_header(line) for line in header_lines]
        lowered = {name.lower(): value for name, value in headers}
        raw = bytearray(head)
        if lowered.get("transfer-encoding", "").lower() == "chunked":
            body = await self._read_chunked(raw)
        else:
            body = await self.reader.readexactly(int(lowered.get("content-length", "0")))
            raw += body
        request = ReceivedRequest(method, target, headers, body, bytes(raw))
        self.requests.append(request)
        return request

    async def _read_chunked(self, raw: bytearray) -> bytes:
        body = bytearray()
        while True:
            size_line = await self.reader.readuntil(b"\r\n")
            raw += size_line
            size = int(size_line.split(b";")[0], 16)
            data = await self.reader.readexactly(size + 2)
            raw += data
            if data[-2:] != b"\r\n":
                raise ValueError(f"chunk of {size} bytes not followed by CRLF: {data[-2:]!r}")
            if size == 0:
                return bytes(body)
            body += data[:-2]


def _split_header(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name, value.strip()


Handler = Callable[[Peer], Awaitable[None]]


class ScriptedServer:
    """``async with ScriptedServer(handler) as server``: ``server.url``, ``server.peers``.

    With ``ssl_context`` (a server context) it speaks TLS and ``url`` is https.
    """

    def __init__(self, handler: Handler, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._handler = handler
        self._ssl_context = ssl_context
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.peers: list[Peer] = []
        self.errors: list[BaseException] = []
        self.port = 0

    @property
    def url(self) -> str:
        scheme = "http" if self._ssl_context is None else "https"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", 0, ssl=self._ssl_context
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for peer in self.peers:
            peer.writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if exc is None and self.errors:
            raise self.errors[0]

    async def wait_for_peers(self, count: int) -> list[Peer]:
        await eventually(lambda: len(self.peers) >= count)
        return self.peers

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A task of our own, not a coroutine for asyncio.start_server to wrap: cancelling it at
        # the server's exit must not be logged as an error by asyncio's streams.
        peer = Peer(reader, writer)
        self.peers.append(peer)
        task = asyncio.get_running_loop().create_task(self._serve(peer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, peer: Peer) -> None:
        try:
            await self._handler(peer)
            if not peer.writer.is_closing():
                await peer.linger()
        except Exception as exc:  # a failed handler fails the test, at the server's exit
            self.errors.append(exc)
            peer.writer.transport.abort()


def response(
    body: bytes = b"",
    *,
    status: int = 200,
    reason: str = "OK",
    headers: Iterable[tuple[str, str]] = (),
) -> bytes:
    """A complete response with a Content-Length body."""
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (``chunk(b"")`` is the last one)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def answer_every_request(*answers: bytes) -> Handler:
    """A handler that answers the connection's n-th request with ``answers[n]``.

    Requests after those are read and never answered."""

    async def handler(peer: Peer) -> None:
        for answer in answers:
            if await peer.read_request() is None:
                return
            await peer.send(answer)

    return handler


def answer_in_turn(*answers: bytes, then: bytes) -> Handler:
    """A handler that answers the server's n-th request (on any connection) with ``answers[n]``,
    and every request after those with ``then``."""
    served = 0

    async def handler(peer: Peer) -> None:
        nonlocal served
        while await peer.read_request() is not None:
            served += 1
            await peer.send(answers[served - 1] if served <= len(answers) else then)

    return handler
