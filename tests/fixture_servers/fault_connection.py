"""One accepted connection of the fault-injecting upstream: requests in, framed responses out.

HTTP/1.1 with keep-alive: requests are read one after the other on the same connection. While a
response is written the connection watches its reader, so a client that goes away is noticed at
once (EOF), not at the next write.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404:
           "Not Found", 407: "Proxy Authentication Required", 422: "Unprocessable Entity", 429:
           "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}  # fmt: skip


@dataclass(frozen=True)
class RequestHead:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    raw_body: bytes

    @property
    def body(self) -> dict[str, Any] | None:
        return json_object(self.raw_body)


class ServerConnection:
    """Response writing, chunk framing and disconnect detection for one connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.chunked = False
        self.write_size: int | None = None
        self._watch: asyncio.Future[bytes] | None = None
        self._early = b""  # a byte the watch read that belongs to the next request

    @property
    def gone(self) -> bool:
        if self.writer.is_closing():
            return True
        watch = self._watch
        if watch is None or not watch.done():
            return False
        return watch.cancelled() or watch.exception() is not None or not watch.result()

    async def next_request(self) -> RequestHead | None:
        """The next request on this connection; None when the client closed it in between."""
        await self._stop_watching()
        try:
            head = self._early + await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial or self._early:
                raise
            return None
        self._early = b""
        request_line, *header_lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        method, path, _version = request_line.split(" ", 2)
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines)
        }
        length = int(headers.get("content-length", "0") or 0)
        raw_body = await self.reader.readexactly(length) if length else b""
        # A client sends nothing more while it waits for the answer: reading EOF (or a reset)
        # means it went away.
        self._watch = asyncio.ensure_future(self.reader.read(1))
        return RequestHead(method, path, headers, raw_body)

    async def head(self, status: int, headers: Mapping[str, str], *, keep_alive: bool) -> None:
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
        if not keep_alive:
            lines.append("Connection: close")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await self.writer.drain()

    async def send(self, data: bytes) -> bool:
        """Write body bytes; False when the client is gone."""
        size = self.write_size or len(data) or 1
        for start in range(0, len(data), size):
            if self.gone:
                return False
            piece = data[start : start + size]
            self.writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if self.chunked else piece)
            try:
                await self.writer.drain()
            except ConnectionError:
                return False
        return not self.gone

    async def end_body(self) -> bool:
        """The chunked body's terminator, in a write of its own; False when the client is gone."""
        if not self.chunked:
            return not self.gone
        if self.gone:
            return False
        self.writer.write(b"0\r\n\r\n")
        try:
            await self.writer.drain()
        except ConnectionError:
            return False
        return True

    async def pause(self, seconds: float) -> bool:
        """Sleep, waking early when the client disconnects; False when it is gone."""
        if seconds > 0 and self._watch is not None:
            await asyncio.wait({self._watch}, timeout=seconds)
        elif seconds > 0:
            await asyncio.sleep(seconds)
        return not self.gone

    def reset(self) -> None:
        sock = self.writer.get_extra_info("socket")
        if sock is not None:  # linger 0: close() sends RST instead of FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def close(self) -> None:
        await self._stop_watching()
        if self.gone:
            self.writer.transport.abort()
        else:
            self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), timeout=1.0)
        except (TimeoutError, ConnectionError, OSError):
            self.writer.transport.abort()

    async def _stop_watching(self) -> None:
        watch, self._watch = self._watch, None
        if watch is None:
            return
        if not watch.done():
            watch.cancel()  # a pending read loses no data: the bytes stay in the reader
            await asyncio.wait({watch})
        if not watch.cancelled() and watch.exception() is None:
            self._early = watch.result()


def json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None
