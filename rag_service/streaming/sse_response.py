"""The HTTP side of a stream: one response that replays a session's events, then follows it live.

``SessionResponse`` is a Starlette ``StreamingResponse``: its ``__init__`` sets the status,
headers and media type, and Starlette's own ``stream_response`` writes the body, each part with
``await send(...)`` from the response's task. The body is the session's events as the reader's
``EventEncoder`` writes them (native SSE or OpenAI chunks), read after ``after_seq``:

- events that are already there (a resume's replay, or whatever came while a write waited on a
  slow client) go out in batches of up to ``BATCH_EVENTS`` per write;
- once caught up, the task sleeps on one future handed to the session (``notify``), resolved
  by the next append, so one wake-up writes everything appended meanwhile. No timer, set or
  callback is made per event, and there is no polling.

A write to a slow client waits in uvicorn's flow control, which is the back-pressure: the
answer keeps going into the replay buffer, and a reader that falls out of the replay window
gets the encoder's ``fell_behind`` bytes and the end of the response.

Only ``__call__`` is ours, for what ``StreamingResponse`` does not do under uvicorn: notice a
disconnect at once, even on a stream that is silent. uvicorn drops writes to a closed connection
silently (ASGI spec 2.3); only ``receive()`` says ``http.disconnect``. So the response keeps a
task on ``receive()`` (with a done callback, not a coroutine looping over it) and detaches its
reader the moment the client leaves: the session's grace period starts at the disconnect, not
at the next write. Pings come from the process-wide keep-alive ticker (``keepalive``), which
wakes a reader that has been silent too long.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping

from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from rag_service.streaming.registry import StreamRegistry
from rag_service.streaming.session import StreamSession
from rag_service.streaming.sse_format import EventEncoder

SSE_HEADERS = {
    "Cache-Control": "no-store",
    # nginx buffers proxied responses unless told not to; an SSE stream must flush per event.
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}
# Events joined into one write: fewer syscalls, bounded chunk size.
BATCH_EVENTS = 64
_WATCHER_NAME = "sse-disconnect-watch"  # shared: a default task name is a new string per task


class SessionResponse(StreamingResponse):
    """Streams ``session`` from ``after_seq + 1`` to its end, after ``opening``, as ``encoder``
    writes it; detaches the reader (attached by ``StreamRegistry.open``/``attach``, owned by the
    response from construction on) exactly once, at the disconnect or at the end."""

    media_type = "text/event-stream"

    def __init__(
        self,
        session: StreamSession,
        registry: StreamRegistry,
        *,
        encoder: EventEncoder,
        after_seq: int = 0,
        opening: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._session = session
        self._registry = registry
        self._encoder = encoder
        self._after_seq = after_seq
        self._opening = opening
        self._waiter: asyncio.Future[None] | None = None
        self._receive: Receive | None = None
        self._watcher: asyncio.Future[Message] | None = None
        self._disconnected = False
        self._ping_requested = False
        self._released = False
        self.wrote = True  # see keepalive: the response's start counts as output
        self._chunks = self._body()
        super().__init__(self._chunks, headers=SSE_HEADERS | dict(headers or {}))

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
        keepalive = self._registry.keepalive
        self._receive = receive
        self._watch()
        keepalive.add(self)
        try:
            await self.stream_response(send)
        except OSError:
            pass  # the client went away during a write (servers of ASGI spec 2.4 raise this)
        finally:
            keepalive.discard(self)
            self._receive = None
            if self._watcher is not None:
                self._watcher.cancel()
                self._watcher = None
            self.release()
            await self._chunks.aclose()  # left at a `yield` when a write failed: no await in it
        if self.background is not None:
            await self.background()

    async def _body(self) -> AsyncGenerator[bytes, None]:
        """The writes: the opening, the events in batches, pings; ends at the session's end,
        at a disconnect, or when the reader fell out of the replay window."""
        if self._opening:
            yield self._opening
        session, encoder = self._session, self._encoder
        # Held for the whole body: asyncio.get_running_loop() costs a getpid() syscall per
        # call, and the loop is asked for one future per event followed live.
        loop = asyncio.get_running_loop()
        while not self._disconnected:
            after_seq = self._after_seq
            if after_seq + 1 < session.first_seq:
                last_words = encoder.fell_behind()
                if last_words:
                    yield last_words
                return
            events = session.read_events(after_seq, BATCH_EVENTS)
            if events:
                self._after_seq = events[-1].seq
                body = encoder.encode(events)
                if body:
                    self.wrote = True
                    self._ping_requested = False  # this write is the sign of life
                    yield body
            elif session.ended_for_readers:
                return
            elif self._ping_requested:
                self._ping_requested = False
                self.wrote = True
                yield encoder.ping
            else:
                self._waiter = loop.create_future()
                session.notify(self._waiter)
                try:
                    await self._waiter
                finally:
                    self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _watch(self) -> None:
        """Wait for the client's next message (``_on_received`` takes it).

        A task on ``receive()`` itself with a done callback, not a coroutine of ours looping
        over it: thousands of these wait at once, and each frame costs a few hundred bytes.
        """
        assert self._receive is not None
        watcher = self._watcher = asyncio.ensure_future(self._receive())
        if isinstance(watcher, asyncio.Task):
            watcher.set_name(_WATCHER_NAME)
        watcher.add_done_callback(self._on_received)

    def _on_received(self, watcher: asyncio.Future[Message]) -> None:
        """At ``http.disconnect`` detach at once and wake the writer to stop."""
        if watcher.cancelled():
            return  # the response ended first
        error = watcher.exception()
        if error is not None and not isinstance(error, OSError):
            raise error  # not a disconnect: the loop's exception handler reports it
        if error is None and watcher.result()["type"] != "http.disconnect":
            if self._receive is not None:  # the request's body: the disconnect is yet to come
                self._watch()
            return
        self._disconnected = True
        self.release()
        self._wake()
