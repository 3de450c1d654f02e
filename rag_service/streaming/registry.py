"""Live stream sessions: their generation tasks, their readers, and when they expire.

Generation is decoupled from delivery. Each answer runs as a task owned by this registry, not by
the HTTP request that asked for it, so a client that drops its connection loses nothing: the task
keeps appending to the session's replay buffer and a resume picks up where the client left off.

Lifetime of a session (``grace`` = ``settings.stream.grace_period_s``):

- it is kept while at least one reader is attached;
- when its last reader detaches, a timer of ``grace`` starts; a reader attaching in time cancels
  it. When it fires, a still-running generation is cancelled (which closes the upstream request)
  and the session is removed, so a later resume answers 404;
- a session whose generation has ended stays resumable for ``grace`` after its last reader left.

A session may hold its key's stream slot (per-key limits, ``rag_service.limits``): it is given
back when the generation ends or the session is removed, whichever comes first, so a stream
whose client left still counts against its key until its generation is cancelled.

Readers (the HTTP responses) also register with the registry's ``keepalive``: one timer for the
whole process that tells readers silent for too long to send a ping (see ``keepalive``).

Capacity: at most ``max_sessions`` sessions. When full, ended sessions nobody reads are evicted
oldest first; only when none is left does ``open`` refuse with 503 + Retry-After. New sessions
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
from dataclasses import dataclass

from rag_service.errors import (
    Forbidden,
    NotFound,
    RagServiceError,
    ServiceUnavailable,
    UpstreamProtocolError,
)
from rag_service.limits import StreamSlot
from rag_service.ports import Clock
from rag_service.settings import StreamSettings
from rag_service.streaming.keepalive import KeepAlive
from rag_service.streaming.session import StreamSession
from rag_service.streaming.sse_format import is_well_formed_stream_id, new_stream_id
from rag_service.upstream_events import EventSink

logger = logging.getLogger(__name__)

DEFAULT_MAX_SESSIONS = 20_000
# One answer's generation: pushes its items into the sink it is given (``ChatUpstream.answer``).
Generation = Callable[[EventSink], Awaitable[None]]
_CLOSE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class StreamStats:
    sessions: int  # held sessions: generating or resumable
    generating: int  # sessions whose generation task still runs
    readers: int  # attached HTTP responses
    refused_full: int = 0  # new streams refused: max_sessions held
    refused_overloaded: int = 0  # new streams refused: the event loop was behind


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
        # Ended sessions without readers, oldest first (dicts keep insertion order): evictable.
        self._idle_ended: dict[str, None] = {}
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
        if len(self._sessions) >= self._max_sessions and not self._idle_ended:
            self._refused_full += 1
            raise ServiceUnavailable(
                "too many concurrent streams",
                retry_after_s=self._rng.uniform(1.0, 3.0),
                details={"reason": "too_many_streams"},
            )

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
            self._check_room()
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        if len(self._sessions) >= self._max_sessions:
            self._remove(self._sessions[next(iter(self._idle_ended))])
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
        session = self._sessions.get(stream_id) if is_well_formed_stream_id(stream_id) else None
        if session is None:
            raise NotFound("unknown or expired stream")
        if not _same_principal(session.principal, principal):
            raise Forbidden("this stream belongs to another client")
        return session

    # -- readers and expiry -----------------------------------------------------------------------

    def attach(self, session: StreamSession) -> None:
        session.readers += 1
        self._readers += 1
        self._idle_ended.pop(session.stream_id, None)
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None

    def detach(self, session: StreamSession) -> None:
        session.readers -= 1
        self._readers -= 1
        if session.readers == 0 and self._sessions.get(session.stream_id) is session:
            self._start_grace(session)

    def _start_grace(self, session: StreamSession) -> None:
        if session.finished:
            self._idle_ended[session.stream_id] = None
        if session.expiry is not None:
            session.expiry.cancel()
        loop = asyncio.get_running_loop()
        session.expiry = loop.call_later(self._settings.grace_period_s, self._expire, session)

    def _expire(self, session: StreamSession) -> None:
        session.expiry = None
        if session.readers == 0:
            self._remove(session)

    def _remove(self, session: StreamSession) -> None:
        if self._sessions.get(session.stream_id) is session:
            del self._sessions[session.stream_id]
        self._idle_ended.pop(session.stream_id, None)
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
        _release_slot(session)
        if not session.finished:
            # Cancelled (expiry or shutdown): make sure readers still attached see an end.
            session.fail(ServiceUnavailable("the answer was cancelled", retry_after_s=1.0))
        if session.readers == 0 and self._sessions.get(session.stream_id) is session:
            self._start_grace(session)

    # -- metrics and shutdown ---------------------------------------------------------------------

    def stats(self) -> StreamStats:
        generating = sum(1 for s in self._sessions.values() if s.task and not s.task.done())
        return StreamStats(
            sessions=len(self._sessions),
            generating=generating,
            readers=self._readers,
            refused_full=self._refused_full,
            refused_overloaded=self._refused_overloaded,
        )

    async def close(self) -> None:
        """Refuse new streams, end every session with an ``error`` event, cancel generations."""
        self._closed = True
        self.keepalive.close()
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


def _same_principal(owner: str | None, caller: str | None) -> bool:
    if owner is None or caller is None:
        return owner is caller
    return hmac.compare_digest(owner.encode(), caller.encode())
