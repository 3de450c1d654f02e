"""Live stream sessions: their generation tasks, their readers, and when they expire.

Generation is decoupled from delivery. Each answer runs as a task owned by this registry, not by
the HTTP request that asked for it, so a client that drops its connection loses nothing: the task
keeps appending to the session's replay buffer and a resume picks up where the client left off.

Lifetime of a session (``grace`` = ``grace_period_s``, ``retention`` = ``retention_s`` of
``settings.stream``):

- it is kept while at least one reader is attached;
- while it generates: when its last reader detaches, a timer of ``grace`` starts; a reader
  attaching in time cancels it. When it fires, the generation is cancelled (which closes the
  upstream request) and the session is removed, so a later resume answers 404;
- once its generation has ended (``done``, ``error``, cancelled by its client) and no reader is
  attached, it is *retained*: resumable for ``retention`` from then, so a client that lost the
  end can come back minutes later. Retained sessions are also forgotten oldest first while their
  replay buffers together hold more than ``retention_max_bytes``; a generating session never is.

Retention needs no timer per session (``retention.py``): expired sessions are forgotten on every
look-up (``find``, ``check_capacity``, ``stats``), so none is ever found, and by one registry
timer (``_arm_sweeper``), which frees an idle process's memory. Times come from ``clock``.
``cancel`` (a client's stop) ends the stream with an ``error`` event (``cancelled``)
and cancels its generation; the session is then retained like any ended one.

A session may hold its key's stream slot (per-key limits, ``rag_service.limits``): it is given
back when the generation ends or the session is removed, whichever comes first, so a stream
whose client left still counts against its key until its generation is cancelled.

Readers (the HTTP responses) also register with the registry's ``keepalive``: one timer for the
whole process that tells readers silent for too long to send a ping (see ``keepalive``).

Capacity: at most ``max_sessions`` sessions. When full, retained sessions are evicted oldest
first; only when none is left does ``open`` refuse with 503 + Retry-After. New sessions
are also refused while the event loop runs more than ``shed_loop_lag_ms`` behind (``loop_lag``,
see ``loop_lag.py``): past the process's capacity, shedding new streams keeps the open ones on
pace. Both refusals carry ``details.reason`` and are counted in ``stats``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import random
import time
from collections.abc import Awaitable, Callable

from rag_service.errors import (
    Forbidden,
    NotFound,
    RagServiceError,
    ServiceUnavailable,
    StreamCancelled,
    UpstreamProtocolError,
)
from rag_service.ports import Clock, EventSink, StreamSlot
from rag_service.settings import StreamSettings
from rag_service.streaming.keepalive import KeepAlive
from rag_service.streaming.retention import RetainedStreams
from rag_service.streaming.session import StreamSession
from rag_service.streaming.sse_format import is_well_formed_stream_id, new_stream_id
from rag_service.streaming.stream_stats import StreamStats as StreamStats  # re-exported

logger = logging.getLogger(__name__)

DEFAULT_MAX_SESSIONS = 20_000
# One answer's generation: pushes its items into the sink it is given (``ChatUpstream.answer``).
Generation = Callable[[EventSink], Awaitable[None]]
_CLOSE_TIMEOUT_S = 5.0
# The retention timer fires this much after the oldest retained session's time: sessions that
# run out within it are forgotten in one go (a look-up forgets them on time regardless).
_SWEEP_SLACK_S = 1.0


class StreamRegistry:
    def __init__(
        self,
        settings: StreamSettings,
        *,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        loop_lag: Callable[[], float] | None = None,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        """``loop_lag`` says how many seconds the event loop is behind (``LoopLagMonitor.lag_s``);
        without it, or with ``shed_loop_lag_ms`` 0, nothing is refused for lag."""
        self._settings = settings
        self._max_sessions = max_sessions
        shed_s = settings.shed_loop_lag_ms / 1000
        self._loop_lag = loop_lag if shed_s > 0 else None
        self._shed_lag_s = shed_s
        self._refused_full = 0
        self._refused_overloaded = 0
        self._clock = clock
        self._rng = rng or random.Random()
        self._sessions: dict[str, StreamSession] = {}
        # Ended sessions without readers: resumable until their time is up, and evictable.
        self._retained = RetainedStreams(
            retention_s=settings.retention_s, max_bytes=settings.retention_max_bytes, clock=clock
        )
        self._sweeper: asyncio.TimerHandle | None = None
        self._cancelled = 0
        self._evicted_full = 0
        self._evicted_bytes = 0
        self._readers = 0
        self._closed = False
        self.keepalive = KeepAlive(settings.ping_interval_s)

    def now(self) -> float:
        """The registry's clock (monotonic seconds); answer timings are measured with it."""
        return self._clock()

    # -- opening and finding sessions -------------------------------------------------------------

    def check_capacity(self) -> None:
        """Raise when a new stream must be refused now (before the costly context lookup)."""
        self._check_room()
        lag_s = self._loop_lag() if self._loop_lag is not None else 0.0
        if lag_s > self._shed_lag_s:
            self._refused_overloaded += 1
            raise ServiceUnavailable(
                "the service is overloaded; retry later",
                retry_after_s=self._rng.uniform(1.0, 3.0),  # spread the retries out
                details={"reason": "overloaded", "loop_lag_ms": round(lag_s * 1000)},
            )

    def _check_room(self) -> None:
        if self._closed:
            raise ServiceUnavailable("the service is shutting down", retry_after_s=1.0)
        self._forget_expired()
        if len(self._sessions) >= self._max_sessions and not self._retained:
            self._refused_full += 1
            raise ServiceUnavailable(
                "too many concurrent streams",
                retry_after_s=self._rng.uniform(1.0, 3.0),
                details={"reason": "too_many_streams"},
            )

    def _make_room(self) -> None:
        """Room for one more session: evict the oldest retained one if need be, or raise."""
        self._check_room()
        if len(self._sessions) >= self._max_sessions:
            self._evicted_full += 1
            self._remove_retained(self._retained.oldest())

    def open(
        self,
        *,
        context_id: str,
        principal: str | None,
        started_at: float,
        slot: StreamSlot | None = None,
    ) -> StreamSession:
        """A new session with one reader already attached (the response being prepared).

        ``slot`` (the key's stream slot) is the session's from here on, released by the registry
        even when this raises.

        The lag is not checked again here: a stream whose context was just looked up is let
        through, even if that look-up held the loop (a cold model, a lazy store opening).
        """
        try:
            self._make_room()
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        session = StreamSession(
            stream_id=new_stream_id(),
            context_id=context_id,
            principal=principal,
            buffer_capacity=self._settings.replay_buffer_events,
            clock=self._clock,
            started_at=started_at,
        )
        session.slot = slot
        self._sessions[session.stream_id] = session
        self.attach(session)
        return session

    def adopt(self, session: StreamSession) -> None:
        """Hold a copy of another replica's stream (``replicas``), without a reader: a running
        one is in its grace period until the resume that made it attaches, an ended one is
        retained."""
        self._make_room()
        self._sessions[session.stream_id] = session
        if session.finished:
            self._retain(session)
        else:
            self._start_grace(session)

    def start(self, session: StreamSession, generate: Generation) -> None:
        """Run the generation in a task of its own: ``generate`` pushes into the session."""
        session.task = asyncio.get_running_loop().create_task(self._generate(session, generate))

    def abandon(self, session: StreamSession) -> None:
        """Drop a session whose response will never run (its start failed half-way)."""
        self._readers -= session.readers
        session.readers = 0
        self._remove(session)

    def find(self, stream_id: str, principal: str | None) -> StreamSession:
        """The session a resume asks for; NotFound when unknown/expired, Forbidden when foreign."""
        self._forget_expired()
        session = self._sessions.get(stream_id) if is_well_formed_stream_id(stream_id) else None
        if session is None:
            raise NotFound("unknown or expired stream")
        if not same_principal(session.principal, principal):
            raise Forbidden("this stream belongs to another client")
        return session

    def cancel(self, session: StreamSession) -> bool:
        """End ``session``'s generation now, at its client's request; False if it had ended.

        Its readers get a final ``error`` event (``cancelled``, not retryable), the generation
        task is cancelled (closing the upstream request), and the session stays resumable
        like any ended one, so a client reconnecting later sees how it ended.
        """
        if session.finished:
            return False
        session.fail(StreamCancelled("the answer was cancelled by its client"))
        self._cancelled += 1
        task = session.task
        if task is None or task.done():
            self._on_generation_end(session)
        else:
            task.cancel()
            # ``_generate`` ends the session in its ``finally``, but a task cancelled before its
            # first step runs none of it; ``_on_generation_end`` may run twice, harmlessly.
            task.add_done_callback(lambda _: self._on_generation_end(session))
        return True

    def keep_alive(self, session: StreamSession) -> None:
        """``session`` is read on another replica (``shared_streams``): a grace period that
        runs restarts, as if a reader had just left."""
        if session.expiry is not None and session.readers == 0 and not session.finished:
            self._start_grace(session)

    def moved(self, session: StreamSession) -> None:
        """Another replica took ``session``'s stream over (``shared_streams``; this one was
        thought dead): its generation is cancelled, its readers end after what they were
        shown (they resume there, through the store), and it is forgotten here."""
        session.cut()
        self._remove(session)

    # -- readers, expiry and retention ------------------------------------------------------------

    def attach(self, session: StreamSession) -> None:
        session.readers += 1
        self._readers += 1
        self._retained.discard(session.stream_id)
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None

    def detach(self, session: StreamSession) -> None:
        session.readers -= 1
        self._readers -= 1
        if session.readers == 0 and self._sessions.get(session.stream_id) is session:
            if session.finished:
                self._retain(session)
            else:
                self._start_grace(session)

    def _start_grace(self, session: StreamSession) -> None:
        if session.expiry is not None:
            session.expiry.cancel()
        loop = asyncio.get_running_loop()
        session.expiry = loop.call_later(self._settings.grace_period_s, self._expire, session)

    def _expire(self, session: StreamSession) -> None:
        session.expiry = None
        if session.readers == 0:
            self._remove(session)

    def _retain(self, session: StreamSession) -> None:
        """Keep an ended session nobody reads for ``retention_s`` (idempotent)."""
        if session.stream_id in self._retained:
            return
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        self._retained.add(session.stream_id, session.nbytes)
        while self._retained.over_bytes():
            # Oldest first, down to this very session if it alone is over the bound.
            self._evicted_bytes += 1
            self._remove_retained(self._retained.oldest())
        self._forget_expired()
        self._arm_sweeper()

    def _forget_expired(self) -> None:
        while (stream_id := self._retained.oldest_expired()) is not None:
            self._remove_retained(stream_id)

    def _remove_retained(self, stream_id: str | None) -> None:
        assert stream_id is not None, "called only while a session is retained"
        self._remove(self._sessions[stream_id])

    def _arm_sweeper(self) -> None:
        """The registry's one retention timer, due when the oldest retained session's time is
        up. A timer due too early (that session was resumed or evicted) only re-arms; one is
        never late, as sessions retained later run out later."""
        delay = self._retained.seconds_to_next_expiry()
        if self._sweeper is not None or delay is None or self._closed:
            return
        self._sweeper = asyncio.get_running_loop().call_later(delay + _SWEEP_SLACK_S, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        self._forget_expired()
        self._arm_sweeper()

    def _remove(self, session: StreamSession) -> None:
        if self._sessions.get(session.stream_id) is session:
            del self._sessions[session.stream_id]
        self._retained.discard(session.stream_id)
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        if session.task is not None and not session.task.done():
            session.task.cancel()  # closes the upstream request (its generator is aclose()d)
        # Now rather than at the task's end: a task cancelled before its first step never runs
        # its ``finally``.
        _release_slot(session)

    async def _generate(self, session: StreamSession, generate: Generation) -> None:
        """Run ``generate`` into ``session``; always ends the session with ``done``/``error``.

        Its end is handled in here rather than by a done callback on the task (one closure
        less per stream). A task cancelled before its first step runs none of this, but only
        ``_remove`` cancels, and a removed session has no reader left to wait for its end.
        """
        try:
            await generate(session.apply)
            if not session.finished:
                session.fail(
                    UpstreamProtocolError("the upstream answer ended without a final item")
                )
        except RagServiceError as error:
            session.fail(error)
        except Exception:
            logger.exception("generation of stream %s failed", session.stream_id)
            session.fail(RagServiceError("the answer failed unexpectedly"))
        finally:
            self._on_generation_end(session)

    def _on_generation_end(self, session: StreamSession) -> None:
        """Release the key's slot, make sure the stream ended, retain it if nobody reads it.
        Idempotent (``cancel`` may call it besides ``_generate``)."""
        _release_slot(session)
        if not session.finished:
            # Cancelled (expiry or shutdown): make sure readers still attached see an end.
            session.fail(ServiceUnavailable("the answer was cancelled", retry_after_s=1.0))
        if session.readers == 0 and self._sessions.get(session.stream_id) is session:
            self._retain(session)

    # -- metrics and shutdown ---------------------------------------------------------------------

    def stats(self) -> StreamStats:
        self._forget_expired()
        generating = sum(1 for s in self._sessions.values() if s.task and not s.task.done())
        return StreamStats(
            sessions=len(self._sessions),
            generating=generating,
            readers=self._readers,
            refused_full=self._refused_full,
            refused_overloaded=self._refused_overloaded,
            retained=len(self._retained),
            retained_bytes=self._retained.nbytes,
            cancelled=self._cancelled,
            evicted_full=self._evicted_full,
            evicted_bytes=self._evicted_bytes,
        )

    async def close(self) -> None:
        """Refuse new streams, end every session with an ``error`` event, cancel generations."""
        self._closed = True
        self.keepalive.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        sessions = list(self._sessions.values())
        tasks = [s.task for s in sessions if s.task is not None and not s.task.done()]
        for session in sessions:
            session.fail(ServiceUnavailable("the service is shutting down", retry_after_s=1.0))
            self._remove(session)
        if tasks:
            await asyncio.wait(tasks, timeout=_CLOSE_TIMEOUT_S)


def _release_slot(session: StreamSession) -> None:
    slot, session.slot = session.slot, None
    if slot is not None:
        slot.release()


def same_principal(owner: str | None, caller: str | None) -> bool:
    if owner is None or caller is None:
        return owner is caller
    return hmac.compare_digest(owner.encode(), caller.encode())
