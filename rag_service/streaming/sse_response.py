"""The HTTP side of a stream: one reader that replays a session's events and follows it live.

A plain ASGI callable rather than sse-starlette's ``EventSourceResponse`` (four tasks per
connection) or a Starlette ``Response``: thousands of these are open at once, so each one holds
as little as it can. Per connection there is the request's own task, which writes, and one small
task that waits for ``http.disconnect``. Per event there is one future: the reader hands it to
the session (``StreamSession.notify``) and sleeps on it until the next append. Three things
resolve that future: the session's next append (or its end), the disconnect watcher, and the
process-wide keep-alive ticker (``keepalive``) when the reader has been silent too long. No
timer, set or callback is created per event.

Disconnect detection matters because servers such as uvicorn (ASGI spec 2.3) silently drop
writes to a closed connection: only ``receive()`` tells us the client has gone. The watcher
detaches the reader at that moment, so the session's grace period starts from the disconnect,
not from the next write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from starlette.types import Message, Receive, Scope, Send

from rag_service.errors import ServiceUnavailable
from rag_service.streaming.registry import StreamRegistry
from rag_service.streaming.session import StreamSession
from rag_service.streaming.sse_format import PING

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-store",
    # nginx buffers proxied responses unless told not to; an SSE stream must flush per event.
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}
# Events joined into one write while replaying: fewer syscalls, bounded chunk size.
_BATCH_EVENTS = 64


def raw_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    """ASGI response headers: lower-cased names, Latin-1 values."""
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]


_SSE_RAW_HEADERS = raw_headers(SSE_HEADERS)


class SessionResponse:
    """The lifecycle every reader of a session shares: start the response, watch for the
    client's disconnect, write what ``_follow`` produces, and detach the reader exactly once.

    The reader must already be attached (``StreamRegistry.open``/``attach``); the response owns
    it from construction on. Subclasses write the body in ``_follow`` with ``_next_chunk`` and
    ``_write``.
    """

    __slots__ = (
        "_after_seq",
        "_disconnected",
        "_header_list",
        "_ping_requested",
        "_registry",
        "_released",
        "_send",
        "_session",
        "_waiter",
        "wrote",
    )

    def __init__(
        self,
        session: StreamSession,
        registry: StreamRegistry,
        *,
        after_seq: int = 0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._session = session
        self._registry = registry
        self._after_seq = after_seq
        # Shared by every plain native response; copied at send time (middleware may append).
        self._header_list = (
            raw_headers(SSE_HEADERS | dict(headers)) if headers else _SSE_RAW_HEADERS
        )
        self._send: Send | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._disconnected = False
        self._ping_requested = False
        self._released = False
        self.wrote = True  # see keepalive: the response start counts as output

    def release(self) -> None:
        """Detach this response's reader (idempotent)."""
        if not self._released:
            self._released = True
            self._registry.detach(self._session)

    def ping_due(self) -> None:
        """Called by the keep-alive ticker: send a ping at the next chance."""
        self._ping_requested = True
        self._wake()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._send = send
        keepalive = self._registry.keepalive
        watcher = asyncio.get_running_loop().create_task(self._watch(receive))
        keepalive.add(self)
        try:
            start: Message = {
                "type": "http.response.start",
                "status": 200,
                "headers": list(self._header_list),
            }
            await send(start)
            await self._follow()
            if not self._disconnected:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away during a write (servers on ASGI spec 2.4 raise this)
        finally:
            keepalive.discard(self)
            watcher.cancel()
            self._send = None
            self.release()

    async def _follow(self) -> None:
        raise NotImplementedError

    async def _write(self, chunk: bytes) -> None:
        self.wrote = True
        assert self._send is not None
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def _next_chunk(self) -> bytes | None:
        """The next events (native SSE bytes, several when they are waiting), ``b""`` when a
        ping is due, or ``None`` once the session has ended and everything was read, or the
        client has gone.

        Raises ``ServiceUnavailable`` when the reader fell out of the replay window: the events
        it missed are gone, and an answer with a hole in it must not pass for a whole one.
        """
        session = self._session
        while not self._disconnected:
            after_seq = self._after_seq
            if after_seq < session.last_seq:
                if after_seq + 1 < session.first_seq:
                    raise ServiceUnavailable(
                        "the answer ran ahead of this reader beyond the replay window",
                        retry_after_s=1.0,
                    )
                chunk, self._after_seq = session.read(after_seq, _BATCH_EVENTS)
                return chunk
            if session.finished:
                return None
            if self._ping_requested:
                self._ping_requested = False
                return b""
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            session.notify(waiter)
            await waiter
            self._waiter = None
        return None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _watch(self, receive: Receive) -> None:
        """Wait for ``http.disconnect``; then detach at once and wake the writer to stop."""
        with contextlib.suppress(OSError):
            while (await receive())["type"] != "http.disconnect":
                pass
        self._disconnected = True
        self.release()
        self._wake()


class SseResponse(SessionResponse):
    """Streams ``session`` from ``after_seq + 1`` to its end as the native SSE events."""

    __slots__ = ("_opening",)

    def __init__(
        self, session: StreamSession, registry: StreamRegistry, *, after_seq: int, opening: bytes
    ) -> None:
        super().__init__(session, registry, after_seq=after_seq)
        self._opening = opening

    async def _follow(self) -> None:
        await self._write(self._opening)
        try:
            while (chunk := await self._next_chunk()) is not None:
                await self._write(chunk or PING)
        except ServiceUnavailable:
            return  # fell out of the replay window; a resume from here answers 404
