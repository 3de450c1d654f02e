"""The HTTP side of a stream: one reader that replays a session's events and follows it live.

A plain ASGI response rather than sse-starlette's ``EventSourceResponse``: that one runs four
tasks per connection (sender, pinger, disconnect listener, shutdown watcher), while this runs the
sender in the request's own task plus one small task that waits for ``http.disconnect``. At
thousands of concurrent streams the difference is tens of megabytes. Pings need no task: the
sender waits for the session's next event with a timeout and sends ``: ping`` when it expires.

Disconnect detection matters because servers such as uvicorn (ASGI spec 2.3) silently drop
writes to a closed connection: only ``receive()`` tells us the client has gone, and the session's
grace period must start from that moment.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from rag_service.streaming.registry import StreamRegistry
from rag_service.streaming.session import StreamSession
from rag_service.streaming.sse_format import PING

SSE_HEADERS = {
    "Cache-Control": "no-store",
    # nginx buffers proxied responses unless told not to; an SSE stream must flush per event.
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}
# Events joined into one write while replaying: fewer syscalls, bounded chunk size.
_BATCH_EVENTS = 64


class SessionResponse(Response):
    """The lifecycle every reader of a session shares: start the response, watch for the
    client's disconnect, write what ``_follow`` produces, and detach the reader exactly once.

    The reader must already be attached (``StreamRegistry.open``/``attach``); the response owns
    it from construction on. Subclasses write the body in ``_follow``.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        session: StreamSession,
        registry: StreamRegistry,
        *,
        ping_interval_s: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers(SSE_HEADERS | (headers or {}))
        self._session = session
        self._registry = registry
        self._ping_interval_s = ping_interval_s
        self._released = False

    def release(self) -> None:
        """Detach this response's reader (idempotent)."""
        if not self._released:
            self._released = True
            self._registry.detach(self._session)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnected = asyncio.ensure_future(wait_for_disconnect(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await self._follow(send, disconnected)
            if not disconnected.done():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away during a write (servers on ASGI spec 2.4 raise this)
        finally:
            disconnected.cancel()
            self.release()

    async def _follow(self, send: Send, disconnected: asyncio.Future[None]) -> None:
        raise NotImplementedError


class SseResponse(SessionResponse):
    """Streams ``session`` from ``after_seq + 1`` to its end as the native SSE events."""

    def __init__(
        self,
        session: StreamSession,
        registry: StreamRegistry,
        *,
        after_seq: int,
        opening: bytes,
        ping_interval_s: float,
    ) -> None:
        super().__init__(session, registry, ping_interval_s=ping_interval_s)
        self._after_seq = after_seq
        self._opening = opening

    async def _follow(self, send: Send, disconnected: asyncio.Future[None]) -> None:
        await send_body(send, self._opening)
        session = self._session
        after_seq = self._after_seq
        while not disconnected.done():
            if after_seq + 1 < session.first_seq:
                return  # fell out of the replay window; a resume from here answers 404
            chunk, after_seq = session.read(after_seq, _BATCH_EVENTS)
            if chunk:
                await send_body(send, chunk)
                continue
            if session.finished:
                return
            waiter = session.change_waiter()
            done, _ = await asyncio.wait(
                (waiter, disconnected),
                timeout=self._ping_interval_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not done:
                await send_body(send, PING)


async def send_body(send: Send, chunk: bytes) -> None:
    await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def wait_for_disconnect(receive: Receive) -> None:
    with contextlib.suppress(OSError):
        while (await receive())["type"] != "http.disconnect":
            pass
