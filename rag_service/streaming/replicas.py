"""Resuming and cancelling a stream on whichever replica the request lands (issue #14).

A stream this replica holds (it generates it, or already copies it) is served from memory as
with one process. One it does not hold is looked up in the shared store (``SharedStreams``):
unknown there, 404; another principal's, 403; otherwise this replica opens a *copy* of it
(``StreamRegistry.adopt``, filled with the events the store holds) and, while the stream
runs, a task that follows it (``_follow``: wait for new events in the store, append them).
Resumes of that stream on this replica then share the copy, and the response is the ordinary
``SessionResponse``: ids, bytes, replay window and the ``Last-Event-ID`` rules are those of a
local stream.

When the generating replica dies (its heartbeat lapses while its stream is silent), the
follower takes the stream over (``Takeover``, ``SharedStreams.take_over``): this replica becomes
its generator, fenced against the old one, and continues the answer after the copy's text
through the upstream's continuation strategy (``replay``/``prefix``), with a ``resumed`` event
first. Its clients read on from their ``Last-Event-ID``: durable delivery made sure no client
has an event the store lacks, so the text has no gap and no repeat. Of several followers one
wins; the others follow it.

A copy ends with the stream's own last event, or, when the stream cannot end there, with an
``error`` event of its own: the store no longer holds the stream (expired), its copy broke (the
store failed while it was written: a hole must never pass for a whole answer), no event came
for ``shared_idle_timeout_s``, its replica died and it cannot be continued (durable delivery
off, continuation ``none`` after some text, or the copy no longer holds the answer's start:
``replica_lost``), or the store is down.

A cancel (``DELETE``) for a stream generated elsewhere is a request in the store: the generating
replica cancels at its next copied event, and that ``error`` event reaches every copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from rag_service.domain import ChatRequest, DeltaEvent, SharedState, StreamRecord
from rag_service.errors import Forbidden, InvalidInput, NotFound, ServiceUnavailable
from rag_service.ports import HEARTBEAT_TTL_S, WATCH_EVERY_S, Clock, EventSink, SharedStreams
from rag_service.settings import StreamSettings
from rag_service.streaming.registry import Generation, StreamRegistry, same_principal
from rag_service.streaming.session import StreamSession
from rag_service.streaming.sse_format import is_well_formed_stream_id

# Events read from the store per command while following (a live answer brings a few a time).
FOLLOW_BATCH_EVENTS = 256
# How long one read waits for new events before the record is looked at (the store caps it
# at half a command's time limit); below WATCH_EVERY_S so a waiting copy still says it is read.
FOLLOW_WAIT_S = 2.0
# How long a resume waits for a copy to reach its Last-Event-ID (past a dead replica's
# heartbeat: such a copy ends before).
CATCH_UP_S = HEARTBEAT_TTL_S + 2 * FOLLOW_WAIT_S
_UNKNOWN = "unknown or expired stream"


@dataclass(frozen=True)
class Takeover:
    """How this replica continues a dead replica's stream (``answer.takeover_of``)."""

    # The generation of the rest of an answer: the request, and the text already delivered.
    generation: Callable[[ChatRequest, str], Generation]
    # False when the upstream's continuation strategy is ``none``: only an answer without
    # text yet can be taken over (it starts afresh).
    continues_text: bool


async def find_stream(
    registry: StreamRegistry,
    shared: SharedStreams,
    settings: StreamSettings,
    stream_id: str,
    principal: str | None,
    takeover: Takeover | None = None,
) -> StreamSession:
    """The session a resume asks for: held here, or a copy of another replica's (taken over
    with ``takeover`` if its replica dies). NotFound, Forbidden as ``StreamRegistry.find``;
    ``StateStoreUnavailable`` when only the store could tell and it is down."""
    try:
        return registry.find(stream_id, principal)
    except NotFound:
        if not is_well_formed_stream_id(stream_id):
            raise
    record = await _shared_record(shared, stream_id, principal)
    events = await shared.read(stream_id, 0, max_events=settings.replay_buffer_events, wait_s=0)
    try:  # another resume may have opened the copy while this one waited on the store
        return registry.find(stream_id, principal)
    except NotFound:
        pass
    if not events:
        raise NotFound(_UNKNOWN)  # expired between the two reads
    session = StreamSession(
        stream_id=stream_id,
        context_id=record.context_id,
        principal=record.principal,
        buffer_capacity=settings.replay_buffer_events,
        clock=registry.now,
        started_at=registry.now(),
        first_seq=events[0].seq,
    )
    session.copied = True
    session.replicate(events)
    registry.adopt(session)
    if not session.finished:
        follower = _follower(shared, registry, session, settings.shared_idle_timeout_s, takeover)
        registry.start(session, follower)
    return session


async def check_resume_point(session: StreamSession, after_seq: int) -> None:
    """Raise unless the events after ``after_seq`` can be served from ``session``.

    A copy may trail its stream by a flush: its client may have read further, on the
    generating replica. The resume then waits (at most ``CATCH_UP_S``) for the copy to hold
    ``after_seq``; a copy that ends before (its replica died) cannot serve this client, whose
    next event would be numbered like one it has: 503 (retryable), not an empty stream.
    """
    if session.copied and after_seq > session.last_seq:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CATCH_UP_S):
                while session.last_seq < after_seq and not session.finished:
                    await session.change_waiter()
        if session.last_seq < after_seq or (session.finished and session.last_seq == after_seq):
            raise ServiceUnavailable(
                "this replica's copy of the stream does not reach Last-Event-ID; ask again",
                retry_after_s=1.0,
                details={"reason": "replica_lost"},
            )
    if after_seq > session.last_seq:
        raise InvalidInput("Last-Event-ID is ahead of the stream")
    if after_seq + 1 < session.first_seq:
        raise NotFound(
            "the events after Last-Event-ID are no longer held",
            details={"reason": "replay_window_exceeded", "first_seq": session.first_seq},
        )


async def cancel_stream(
    registry: StreamRegistry, shared: SharedStreams, stream_id: str, principal: str | None
) -> bool:
    """Cancel the stream's generation; False when it had ended (see ``StreamRegistry.cancel``).
    For a stream generated elsewhere, True means the cancellation is requested."""
    try:
        session = registry.find(stream_id, principal)
    except NotFound:
        if not is_well_formed_stream_id(stream_id):
            raise
    else:
        if not session.copied:
            return registry.cancel(session)
        if session.finished:
            return False
    record = await _shared_record(shared, stream_id, principal)
    if record.state is not SharedState.LIVE:
        return False
    await shared.request_cancel(stream_id)
    return True


async def _shared_record(
    shared: SharedStreams, stream_id: str, principal: str | None
) -> StreamRecord:
    record = await shared.record(stream_id)
    if record is None or record.state is SharedState.BROKEN:
        raise NotFound(_UNKNOWN)
    if not same_principal(record.principal, principal):
        raise Forbidden("this stream belongs to another client")
    return record


def _follower(
    shared: SharedStreams,
    registry: StreamRegistry,
    session: StreamSession,
    idle_limit_s: float,
    takeover: Takeover | None,
) -> Generation:
    """The task of a running copy: append the stream's new events until its last; take the
    stream over when its replica died; raise (the registry ends the copy with that ``error``)
    when the stream cannot end."""
    stream_id = session.stream_id
    clock: Clock = registry.now

    async def follow(sink: EventSink) -> None:
        last_event_at = clock()
        watched_at = None
        while not session.finished:
            if session.readers and (watched_at is None or clock() - watched_at >= WATCH_EVERY_S):
                await shared.watch(stream_id)  # keeps the generating replica's grace at bay
                watched_at = clock()
            events = await shared.read(
                stream_id, session.last_seq, max_events=FOLLOW_BATCH_EVENTS, wait_s=FOLLOW_WAIT_S
            )
            if events:
                session.replicate(events)
                last_event_at = clock()
                continue
            record = await shared.record(stream_id)
            if record is None:
                raise ServiceUnavailable("the stream expired on the replica that generated it")
            if record.state is SharedState.BROKEN:
                raise ServiceUnavailable("the stream's shared copy is incomplete")
            silent_s = clock() - last_event_at
            died = (
                not record.replica_alive
                and record.last_seq <= session.last_seq
                and silent_s >= HEARTBEAT_TTL_S  # not a replica whose first beat is under way
            )
            if died and takeover is not None:
                delivered = _delivered_text(session)
                # Continuing after text needs an upstream that can (a continuation strategy).
                if delivered is not None and (takeover.continues_text or not delivered):
                    request = await shared.take_over(stream_id, record.replica, session.last_seq)
                    if request is not None:
                        session.copied = False  # a cancel here is a local one from now on
                        shared.share_taken_over(session, registry)
                        await takeover.generation(request, delivered)(sink)
                        return
                    current = await shared.record(stream_id)
                    if current is not None and current.replica != record.replica:
                        last_event_at = clock()  # another replica took it over: follow that one
                        continue
            if died or silent_s >= idle_limit_s:
                raise ServiceUnavailable(
                    "the replica that generated this stream stopped sending it",
                    details={"reason": "replica_lost"},
                )

    return follow


def _delivered_text(session: StreamSession) -> str | None:
    """The text of this copy's answer, which a take-over continues after; None when the copy
    no longer holds the answer from its start (the meta is seq 1): the replay window dropped
    it, and what the client was shown cannot be known. Once taken over, this replica's session
    is the stream's generator: its new events are copied to the store after the old ones
    (``share_taken_over``)."""
    if session.first_seq != 1:
        return None
    events = session.read_events(0, session.last_seq)
    return "".join(json.loads(e.literal) for e in events if isinstance(e, DeltaEvent))
