"""The HTTP side of a stream: one reader that replays a session's events and follows it live.

A plain ASGI callable rather than sse-starlette's ``EventSourceResponse`` (four tasks per
connection) or a Starlette ``Response``: thousands of these are open at once, so each one holds
as little as it can. Per connection there is the request's own task, which writes, and a task
on the server's ``receive()`` whose done callback notices ``http.disconnect``.

Live events are written without waking that task. Once the reader has caught up, its task parks
on a future and the reader follows the session (``StreamSession.follow``): each append calls
``on_append``, which encodes the new events and runs the server's ``send`` coroutine by hand,
inside the upstream's data callback. ``send`` of uvicorn completes without suspending unless
the client's socket buffer is full; if it does suspend, or anything unusual happens (the end of
the stream, a disconnect, a ping, a reader left behind by the replay window, an error), the
reader stops following and wakes its task, which finishes the suspended ``send`` and handles the
rest. So the task only ever runs while the reader does not follow, and writes never interleave.
Three things wake the task: ``on_append`` as above, the disconnect watcher, and the
process-wide keep-alive ticker (``keepalive``) when the reader has been silent too long.

Disconnect detection matters because servers such as uvicorn (ASGI spec 2.3) silently drop
writes to a closed connection: only ``receive()`` tells us the client has gone. The watcher
detaches the reader at that moment, so the session's grace period starts from the disconnect,
not from the next write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Mapping
from typing import Any

from starlette.types import Message, Receive, Scope, Send

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
_WATCHER_NAME = "sse-disconnect-watch"
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
    client's disconnect, write the session's events as they come, and detach the reader exactly
    once.

    The reader must already be attached (``StreamRegistry.open``/``attach``); the response owns
    it from construction on. Subclasses choose the bytes: ``_encode`` turns native SSE events
    into what the client gets, ``ping`` keeps the connection alive, and ``_fell_behind`` is
    written when the reader fell out of the replay window (then the response ends).
    """

    __slots__ = (
        "_after_seq",
        "_disconnected",
        "_ended",
        "_failure",
        "_header_list",
        "_opening",
        "_ping_requested",
        "_receive",
        "_registry",
        "_released",
        "_send",
        "_session",
        "_suspended",
        "_waiter",
        "_watcher",
        "wrote",
    )

    ping = PING

    def __init__(
        self,
        session: StreamSession,
        registry: StreamRegistry,
        *,
        after_seq: int = 0,
        opening: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._session = session
        self._registry = registry
        self._after_seq = after_seq
        self._opening = opening
        # Shared by every plain native response; copied at send time (middleware may append).
        self._header_list = (
            raw_headers(SSE_HEADERS | dict(headers)) if headers else _SSE_RAW_HEADERS
        )
        self._waiter: asyncio.Future[None] | None = None
        self._send: Send | None = None
        self._receive: Receive | None = None
        self._watcher: asyncio.Future[Message] | None = None
        self._suspended: _SuspendedSend | None = None
        self._failure: Exception | None = None
        self._disconnected = False
        self._ended = False  # the last write (after falling out of the replay window) is done
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
        """Write the events after ``_after_seq`` until the session ends or the client leaves.

        This task writes what a reader must catch up on (the replay after a resume, a batch
        that piled up behind a suspended ``send``), pings and the end; once caught up it sleeps
        on one future while ``on_append`` writes the live events. One frame for the whole
        stream: what to write next is decided by ``_next_write``, a plain call.
        """
        keepalive = self._registry.keepalive
        self._receive = receive
        self._watch()
        keepalive.add(self)
        self._send = send
        try:
            await send(self._start_message())
            body = self._next_write()
            while body is not None:
                if body:
                    self.wrote = True
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                else:
                    await self._follow_live()  # the future itself: no frame is kept while parked
                    suspended = self._end_following()
                    if suspended is not None:
                        await suspended
                body = self._next_write()
            if not self._disconnected:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away during a write (servers on ASGI spec 2.4 raise this)
        finally:
            self._session.unfollow(self)
            self._send = None
            keepalive.discard(self)
            self._receive = None
            if self._watcher is not None:
                self._watcher.cancel()
                self._watcher = None
            self.release()

    def _start_message(self) -> Message:
        # Built in a call of its own so that __call__'s frame, alive for the whole stream,
        # does not hold the message.
        return {"type": "http.response.start", "status": 200, "headers": list(self._header_list)}

    def _next_write(self) -> bytes | None:
        """What the task writes next: bytes; ``b""`` when it has caught up (it then follows
        the session live); None at the end of the stream or once the client has gone."""
        if self._opening:
            body, self._opening = self._opening, b""
            return body
        session = self._session
        while not (self._disconnected or self._ended):
            after_seq = self._after_seq
            if after_seq < session.last_seq:
                if after_seq + 1 < session.first_seq:
                    self._ended = True
                    return self._fell_behind() or None
                chunk, self._after_seq = session.read(after_seq, _BATCH_EVENTS)
                body = self._encode(chunk)
                if body:
                    return body
            elif session.finished:
                return None
            elif self._ping_requested:
                self._ping_requested = False
                return self.ping
            else:
                return b""
        return None

    def _follow_live(self) -> asyncio.Future[None]:
        """Follow the session; the task sleeps on the returned future while ``on_append``
        writes live events (``__call__`` unfollows if the task is cancelled meanwhile)."""
        self._waiter = asyncio.get_running_loop().create_future()
        self._session.follow(self)
        return self._waiter

    def _end_following(self) -> _SuspendedSend | None:
        """After the wake-up: the ``send`` left suspended, if any; raises what ``on_append`` met."""
        self._session.unfollow(self)
        self._waiter = None
        suspended, self._suspended = self._suspended, None
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure
        return suspended

    def on_append(self) -> None:
        """The session grew (or ended) while the task is parked: write the new events now."""
        session = self._session
        after_seq = self._after_seq
        if self._disconnected or session.finished or after_seq + 1 < session.first_seq:
            self._wake()  # the end, a disconnect or a gap: the task's business
            return
        try:
            chunk, self._after_seq = session.read(after_seq, _BATCH_EVENTS)
            body = self._encode(chunk)
            if body:
                self.wrote = True
                self._write_now(body)
        except Exception as error:  # never into the upstream's callback: the task raises it
            self._failure = error
            self._wake()

    def _write_now(self, body: bytes) -> None:
        """Run ``send`` for ``body`` by hand; if it suspends, the task finishes it."""
        assert self._send is not None
        steps = self._send({"type": "http.response.body", "body": body, "more_body": True})
        steps_iter = steps.__await__()
        try:
            yielded = steps_iter.send(None)
        except StopIteration:
            return  # the usual case: written without suspending
        self._suspended = _SuspendedSend(steps_iter, yielded)
        self._wake()

    def _encode(self, chunk: bytes) -> bytes:
        """What the client gets for ``chunk`` (whole native SSE events)."""
        return chunk

    def _fell_behind(self) -> bytes:
        """The last write of a reader that fell out of the replay window (``b""``: none).

        The events it missed are gone, and an answer with a hole in it must not pass for a
        whole one; the native stream just ends, so its resume answers 404.
        """
        return b""

    def _wake(self) -> None:
        """Wake the parked task; the reader stops following until the task parks again."""
        self._session.unfollow(self)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _watch(self) -> None:
        """Wait for the next message of the client (``_on_received`` takes it).

        A task on ``receive()`` itself with a done callback, not a coroutine of ours looping
        over it: thousands of these wait at once, and each frame costs a few hundred bytes.
        """
        assert self._receive is not None
        watcher = self._watcher = asyncio.ensure_future(self._receive())
        if isinstance(watcher, asyncio.Task):
            watcher.set_name(_WATCHER_NAME)  # shared: a default name is a new string per task
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


class SseResponse(SessionResponse):
    """Streams ``session`` from ``after_seq + 1`` to its end as the native SSE events, after
    ``opening`` (the ``retry:`` field)."""

    __slots__ = ()


class _SuspendedSend:
    """Awaiting it finishes, inside a task, a ``send`` that ``on_append`` started by hand and
    that suspended on ``yielded`` (typically a future of the server's flow control)."""

    __slots__ = ("_steps", "_yielded")

    def __init__(self, steps: Generator[Any, Any, None], yielded: Any) -> None:
        self._steps = steps
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, None]:
        coroutine, yielded = self._steps, self._yielded
        while True:
            try:
                sent = yield yielded  # the task waits on it as if ``send`` itself had yielded it
            except BaseException as thrown:  # cancellation reaches ``send`` as usual
                try:
                    yielded = coroutine.throw(thrown)
                except StopIteration:
                    return
                continue
            try:
                yielded = coroutine.send(sent)
            except StopIteration:
                return
