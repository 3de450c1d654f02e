"""``SharedStreams`` on Redis: each stream's events in a Redis Stream, its record in a hash.

Keys::

    <prefix>stream:<stream_id>:events  a Redis Stream; the entry of seq N has the id 0-N and
                                       one field: d=<the delta's JSON string literal>, or
                                       <event name>=<its data JSON> for any other event
    <prefix>stream:<stream_id>:rec     a hash: context_id, principal (absent: none), replica
                                       (its generator), state (live/ended/broken), last (seq),
                                       cancel (1 once another replica asked for it), request
                                       (the ChatRequest's JSON, for a take-over), takeovers

Entry ids are the seqs, so ``Last-Event-ID: <stream_id>:<seq>`` reads as ``XRANGE (0-<seq> +``
and ``XREAD ... 0-<seq>`` on any replica. Streams are trimmed like the replay buffer (``MAXLEN
~ replay_buffer_events``: at least that many kept). Both keys expire ``retention_s`` after the
stream's end (at least ``MIN_TTL_S``); while it runs, ``max(retention_s, LIVE_TTL_S)`` after
the last push-back (at its first batch, then every quarter of that), so the keys of a stream
whose replica died go away on their own.

Writing costs the answer nothing it waits on: a session's mirror (``share``) only appends to a
list. One flusher task per process writes the new events of all its streams ``flush_s`` after
the first of them (at once when a new stream's first event is among them, so that a resume on
another replica finds it from its first moments), in one round trip of one ``FLUSH_SCRIPT`` call (per 500 streams): XADDs,
records and expiries, atomically, so the client encodes one command and parses one reply per
flush (measured in docs/benchmarks.md). One call touches many streams' keys: a Redis Cluster
is not supported (the service's client is not a cluster client either). The script skips seqs
it already holds and marks a stream ``broken`` when a batch does not follow on (Redis lost its
events, or restarted empty): such a copy is never served, since an answer with a hole must
not pass for a whole one.

Durable delivery (``StreamSettings.shared_durable_delivery``, on by default): a shared
session's readers see each event once its batch is written (``SharedSession.hold_back`` /
``release``), so a client never has an event Redis lacks. A stream's first two batches (its
``meta``, then its first text) are written at once rather than at the tick, so that the time
to the first token pays a round trip, not a tick. Take-over (``take_over``, ``TAKEOVER_SCRIPT``)
makes another replica the record's ``replica``; every write names its writer, and the flush
script refuses the old one's (fencing): it then ``moved``s its session.

Redis down: the streams whose batch failed stop being copied (``dropped``) and keep serving
their local readers (their held-back events are released: they stay local); new streams are not copied (``unshared``, counted) until
``retry_interval_s`` has passed, when the next new stream tries again (the pattern of
``FallbackKeyLimiter``). ``degraded`` is True from the failure until a write succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from rag_service.adapters.redis_connection import RedisError, as_text, unavailable
from rag_service.adapters.redis_stream_scripts import (
    BREAK_SCRIPT,
    CANCEL_SCRIPT,
    FLUSH_SCRIPT,
    RECORD_SCRIPT,
    TAKEOVER_SCRIPT,
    WATCH_SCRIPT,
)
from rag_service.domain import (
    TERMINAL_EVENTS,
    ChatMessage,
    ChatRequest,
    DeltaEvent,
    NamedEvent,
    SessionEvent,
    SharedState,
    SharedStreamStats,
    StreamRecord,
)
from rag_service.ports import (
    HEARTBEAT_EVERY_S,
    HEARTBEAT_TTL_S,
    Clock,
    SharedSession,
    StreamOwner,
)
from rag_service.settings import RedisSettings, StreamSettings

logger = logging.getLogger(__name__)

SessionT = TypeVar("SessionT", bound=SharedSession)

LIVE_TTL_S = 600.0  # a running stream's keys outlive a pause of its answer by this much
MIN_TTL_S = 5.0  # an ended stream stays resumable on other replicas at least this long
# Streams per script call: a call blocks Redis while it runs (~7 ms for 500 streams, measured
# by bench.stream_replicas), and the calls of one flush still share one round trip.
_MAX_STREAMS_PER_CALL = 100
_MAX_BROKEN_MARKS = 10_000  # dropped streams remembered to be marked broken once Redis is back
_CLOSE_FLUSH_TIMEOUT_S = 2.0
_DELTA_FIELD = "d"
_ENDED, _SET_EXPIRY = 1, 2  # FLUSH_SCRIPT's flags
_GAP, _CANCEL, _WATCHED, _FENCED = 1, 2, 4, 8  # bits of its reply per stream


class _Outgoing(Generic[SessionT]):
    """One shared stream's events not yet written (the session's ``mirror`` appends them)."""

    __slots__ = (
        "cancel_seen",
        "expiry_due",
        "owner",
        "pending",
        "queued",
        "record",
        "session",
        "upto",
        "urgent",
    )

    def __init__(
        self,
        session: SessionT,
        owner: StreamOwner[SessionT],
        record: dict[str, str] | None,
        urgent: int,
    ) -> None:
        self.session = session
        self.owner = owner
        self.pending: list[SessionEvent] = []
        self.queued = False
        self.cancel_seen = False
        self.expiry_due = 0.0  # when the keys' expiry is to be pushed back (0: at once)
        self.record = record  # written with the first batch
        self.urgent = urgent  # batches still to be written at once rather than at the tick
        self.upto = 0  # the last seq of the batch being written


class RedisStreamStore:
    """``SharedStreams`` on Redis (see the module docstring)."""

    def __init__(
        self,
        redis: Redis,
        *,
        redis_settings: RedisSettings,
        stream_settings: StreamSettings,
        replica_id: str,
        clock: Clock = time.monotonic,
    ) -> None:
        self._redis = redis
        self._prefix = f"{redis_settings.key_prefix}stream:"
        self._block_s = redis_settings.timeout_s / 2  # a blocking read within a command's limit
        self._retry_interval_s = redis_settings.retry_interval_s
        self._flush_s = stream_settings.shared_flush_ms / 1000
        self._durable = stream_settings.shared_durable_delivery
        self._maxlen = b"%d" % stream_settings.replay_buffer_events
        self._live_ttl_ms = b"%d" % round(max(stream_settings.retention_s, LIVE_TTL_S) * 1000)
        self._ended_ttl_ms = b"%d" % round(max(stream_settings.retention_s, MIN_TTL_S) * 1000)
        self._replica_id = replica_id
        self._writer = replica_id.encode()
        self._clock = clock
        self._flush_sha: str | None = None
        self._cancel_script = redis.register_script(CANCEL_SCRIPT)
        self._watch_script = redis.register_script(WATCH_SCRIPT)
        self._record_script = redis.register_script(RECORD_SCRIPT)
        self._takeover_script = redis.register_script(TAKEOVER_SCRIPT)
        self._heartbeat_prefix = f"{redis_settings.key_prefix}replica:"
        self._heartbeat: asyncio.Task[None] | None = None
        self._dirty: list[_Outgoing[Any]] = []
        self._broken_marks: deque[str] = deque(maxlen=_MAX_BROKEN_MARKS)
        self._wake = asyncio.Event()  # events are pending
        self._pending_since = 0.0  # since when (``clock``): the first event after a flush began
        self._soon = asyncio.Event()  # a new stream's are: no waiting for the tick
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self._retry_at: float | None = None  # set while Redis fails
        self._shared = self._unshared = self._dropped = self._taken_over = self._moved = 0
        self._flushes = self._events = self._commands = 0

    # -- SharedStreams: the generating side -------------------------------------------------------

    @property
    def degraded(self) -> bool:
        return self._retry_at is not None

    @property
    def replica_id(self) -> str:
        return self._replica_id

    def share(self, session: SessionT, owner: StreamOwner[SessionT], request: ChatRequest) -> None:
        if self._closed or (self._retry_at is not None and self._clock() < self._retry_at):
            self._unshared += 1  # served on local state only: a fallback
            return
        record = {
            "context_id": session.context_id,
            "state": "live",
            "replica": self._replica_id,
            "request": request_json(request),
        }
        if session.principal is not None:
            record["principal"] = session.principal
        # A new stream's first batch is written at once (a resume elsewhere must find it), and
        # with durable delivery its second too (its first text: the time to first token).
        self._mirror(_Outgoing(session, owner, record, urgent=2 if self._durable else 1))
        self._shared += 1

    def share_taken_over(self, session: SessionT, owner: StreamOwner[SessionT]) -> None:
        self._mirror(_Outgoing(session, owner, None, urgent=1))

    def _mirror(self, outgoing: _Outgoing[SessionT]) -> None:
        session = outgoing.session

        def mirror(event: SessionEvent) -> None:
            outgoing.pending.append(event)
            if not outgoing.queued:
                outgoing.queued = True
                self._dirty.append(outgoing)
                if not self._wake.is_set():
                    self._pending_since = self._clock()
                    self._wake.set()
                if outgoing.urgent:
                    self._soon.set()

        session.mirror = mirror
        if self._durable:
            session.hold_back()
        if self._flusher is None:
            loop = asyncio.get_running_loop()
            self._flusher = loop.create_task(self._flush_forever())
            self._heartbeat = loop.create_task(self._beat_forever())

    async def _beat_forever(self) -> None:
        """Say this replica is alive (a key with a short expiry), so that a replica following one
        of its streams can tell a pause of the answer from this replica's death."""
        key = self._heartbeat_prefix + self._replica_id
        while not self._closed:
            # A failure is the flushes' to notice and count; the next beat tries again.
            with contextlib.suppress(RedisError):
                await self._redis.set(key, "1", px=round(HEARTBEAT_TTL_S * 1000))
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    async def _flush_forever(self) -> None:
        while not self._closed:
            await self._wake.wait()
            # Gather a tick's events of every stream into one round trip. The tick counts from
            # the first of them, not from the end of the last flush: events that came during a
            # flush wait one tick in all, not a flush more (durable delivery's latency).
            wait_s = self._pending_since + self._flush_s - self._clock()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wait_s)):
                    await self._soon.wait()
            self._soon.clear()
            self._wake.clear()
            try:
                await self._flush()
            except Exception:  # a cancel handler's failure, say: the flusher must live on
                logger.exception("copying streams to the state store failed")

    async def _flush(self) -> None:
        batch, self._dirty = self._dirty, []
        batch = [outgoing for outgoing in batch if outgoing.pending]  # not dropped meanwhile
        if not batch and not self._broken_marks:
            return
        now = self._clock()
        events = sum(map(len, (outgoing.pending for outgoing in batch)))
        calls = [
            self._flush_args(batch[start : start + _MAX_STREAMS_PER_CALL], now)
            for start in range(0, len(batch), _MAX_STREAMS_PER_CALL)
        ]
        marks = list(self._broken_marks)
        try:
            replies = await self._write(calls, marks)
        except asyncio.CancelledError:
            # Shut down mid-write: these streams' readers must not wait for a release.
            for outgoing in batch:
                self._drop(outgoing)
            raise
        except RedisError as error:
            self._fail(batch, error)
            return
        except Exception:
            # Not Redis's failure, but the flusher must live on: these streams stay local.
            logger.exception("writing streams to the state store failed")
            self._fail(batch, RedisError("unexpected failure"))
            return
        self._broken_marks.clear()
        self._flushes += 1
        self._events += events
        self._commands += len(calls) + bool(marks)
        if self._retry_at is not None:
            logger.warning("streams are shared again: the state store answers")
            self._retry_at = None
        per_stream = (int(digit) for reply in replies for digit in as_text(reply))
        for outgoing, result in zip(batch, per_stream, strict=True):
            self._applied(outgoing, result)

    def _flush_args(self, batch: list[_Outgoing[Any]], now: float) -> tuple[list[str], list[bytes]]:
        """FLUSH_SCRIPT's keys and arguments for ``batch``; takes their pending events."""
        keys: list[str] = []
        fields: list[bytes] = []
        for outgoing in batch:
            outgoing.queued = False
            if outgoing.urgent:
                outgoing.urgent -= 1
            events, outgoing.pending = outgoing.pending, []
            last = events[-1]
            outgoing.upto = last.seq
            flags = _ENDED if type(last) is NamedEvent and last.name in TERMINAL_EVENTS else 0
            if flags or now >= outgoing.expiry_due:
                flags |= _SET_EXPIRY
                outgoing.expiry_due = now + LIVE_TTL_S / 4
            record, outgoing.record = outgoing.record, None
            stream_id = outgoing.session.stream_id
            keys += (self._events_key(stream_id), self._record_key(stream_id))
            header = (events[0].seq, flags, len(record or ()), len(events))
            fields += [_field(b"%d" % value) for value in header]
            for item in (record or {}).items():
                fields += [_field(part.encode()) for part in item]
            for event in events:
                if isinstance(event, DeltaEvent):
                    fields.append(b"%d:%s" % (len(event.literal), event.literal))
                else:
                    fields.append(_field(b"%s %s" % (event.name.encode(), event.data)))
        batch_arg = b"".join(fields)
        return keys, [self._live_ttl_ms, self._ended_ttl_ms, self._maxlen, batch_arg, self._writer]

    async def _write(
        self, calls: list[tuple[list[str], list[bytes]]], marks: list[str]
    ) -> list[str]:
        """The calls (and the broken marks) in one round trip; the calls' replies."""
        for attempt in range(2):
            if self._flush_sha is None:
                self._flush_sha = await self._redis.script_load(FLUSH_SCRIPT)
            async with self._redis.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    pipe.execute_command("EVALSHA", self._flush_sha, len(keys), *keys, *args)
                if marks:
                    keys = [self._record_key(stream_id) for stream_id in marks]
                    pipe.eval(BREAK_SCRIPT, len(keys), *keys, self._replica_id)
                replies: list[Any] = await pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in replies):
                self._flush_sha = None  # Redis restarted: load it again, write it all again
                continue
            for reply in replies:
                if isinstance(reply, RedisError):
                    raise reply
            return replies[: len(calls)]
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _applied(self, outgoing: _Outgoing[Any], reply: int) -> None:
        session = outgoing.session
        if reply & _FENCED:
            # Another replica took the stream over (this one was thought dead): what was not
            # written here is not the stream's any more.
            session.mirror = None
            outgoing.pending = []
            self._moved += 1
            logger.warning("stream %s was taken over by another replica", session.stream_id)
            outgoing.owner.moved(session)
            return
        if reply & _GAP:
            self._drop(outgoing)
            return
        session.release(outgoing.upto)
        if reply & _CANCEL and not outgoing.cancel_seen:
            outgoing.cancel_seen = True
            outgoing.owner.cancel(outgoing.session)  # appends its last event: written next
        if reply & _WATCHED:
            outgoing.owner.keep_alive(outgoing.session)
        if outgoing.session.finished and not outgoing.queued:
            outgoing.session.mirror = None  # its last event is written: nothing more to copy

    def _fail(self, batch: list[_Outgoing[Any]], error: RedisError) -> None:
        if self._retry_at is None:
            logger.warning(
                "streams fall back to this replica's own state: %s", unavailable(error).message
            )
        self._retry_at = self._clock() + self._retry_interval_s
        for outgoing in batch:
            self._drop(outgoing)

    def _drop(self, outgoing: _Outgoing[Any]) -> None:
        """Stop copying a stream whose copy is incomplete; it keeps its local readers."""
        outgoing.session.mirror = None
        outgoing.session.release_all()
        outgoing.pending = []
        self._dropped += 1
        self._broken_marks.append(outgoing.session.stream_id)

    # -- SharedStreams: the resuming side ---------------------------------------------------------

    async def record(self, stream_id: str) -> StreamRecord | None:
        try:
            reply = await self._record_script(
                keys=[self._record_key(stream_id)], args=[self._heartbeat_prefix]
            )
        except RedisError as error:
            raise unavailable(error) from error
        if not reply:
            return None
        *fields, alive = reply
        state, context_id, principal, replica, last, cancel = (
            None if value is None else as_text(value) for value in fields
        )
        assert state is not None, "RECORD_SCRIPT answers {} without a state"
        return StreamRecord(
            stream_id=stream_id,
            context_id=context_id or "",
            principal=principal,
            replica=replica or "",
            state=SharedState(state),
            last_seq=int(last or "0"),
            cancel_requested=cancel == "1",
            replica_alive=int(alive) == 1,
        )

    async def take_over(self, stream_id: str, replica: str, last_seq: int) -> ChatRequest | None:
        if not self._durable:
            return None  # clients may hold events Redis never got: no exact continuation
        try:
            request = await self._takeover_script(
                keys=[self._record_key(stream_id)],
                args=[self._heartbeat_prefix, replica, self._replica_id, last_seq],
            )
        except RedisError as error:
            raise unavailable(error) from error
        if request is None:
            return None
        self._taken_over += 1
        logger.warning("took over stream %s from replica %s (dead)", stream_id, replica)
        return chat_request_from_json(as_text(request))

    async def read(
        self, stream_id: str, after_seq: int, *, max_events: int, wait_s: float
    ) -> Sequence[SessionEvent]:
        key = self._events_key(stream_id)
        try:
            entries = await self._redis.xrange(key, f"(0-{after_seq}", "+", count=max_events)
            if not entries and wait_s > 0:
                # BLOCK 0 would wait forever; a command must end within the socket's timeout.
                block_ms = max(1, round(min(wait_s, self._block_s) * 1000))
                answer = await self._redis.xread(
                    {key: f"0-{after_seq}"}, count=max_events, block=block_ms
                )
                entries = answer[0][1] if answer else []
        except RedisError as error:
            raise unavailable(error) from error
        return [_event(entry_id, fields) for entry_id, fields in entries]

    async def request_cancel(self, stream_id: str) -> None:
        try:
            await self._cancel_script(keys=[self._record_key(stream_id)])
        except RedisError as error:
            raise unavailable(error) from error

    async def watch(self, stream_id: str) -> None:
        try:
            await self._watch_script(keys=[self._record_key(stream_id)])
        except RedisError as error:
            raise unavailable(error) from error

    def fallbacks(self) -> int:
        """Streams served on local state only: not copied, or their copy stopped half-way."""
        return self._unshared + self._dropped

    def stats(self) -> SharedStreamStats:
        return SharedStreamStats(
            shared=self._shared,
            unshared=self._unshared,
            dropped=self._dropped,
            taken_over=self._taken_over,
            moved=self._moved,
            flushes=self._flushes,
            events=self._events,
            commands=self._commands,
        )

    async def aclose(self) -> None:
        """Write what is pending (the last events of streams ended by the shutdown), bounded."""
        self._closed = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
        try:
            async with asyncio.timeout(_CLOSE_FLUSH_TIMEOUT_S):
                await self._flush()
        except TimeoutError:
            logger.warning("streams' last events were not all written to the state store")

    def _events_key(self, stream_id: str) -> str:
        return f"{self._prefix}{stream_id}:events"

    def _record_key(self, stream_id: str) -> str:
        return f"{self._prefix}{stream_id}:rec"


def request_json(request: ChatRequest) -> str:
    """The JSON a stream's record keeps of its request (``chat_request_from_json`` reads it)."""
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    return json.dumps({"messages": messages, "params": request.params}, separators=(",", ":"))


def chat_request_from_json(text: str) -> ChatRequest:
    data = json.loads(text)
    messages = tuple(ChatMessage(role=m["role"], content=m["content"]) for m in data["messages"])
    return ChatRequest(messages=messages, params=data["params"])


def _field(value: bytes) -> bytes:
    """One field of FLUSH_SCRIPT's batch."""
    return b"%d:%s" % (len(value), value)


def _event(entry_id: str, fields: dict[str, str]) -> SessionEvent:
    seq = int(entry_id.partition("-")[2])
    ((name, value),) = fields.items()
    if name == _DELTA_FIELD:
        return DeltaEvent(seq, value.encode())
    return NamedEvent(seq, name, value.encode())
