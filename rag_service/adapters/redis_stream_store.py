"""``SharedStreams`` on Redis: each stream's events in a Redis Stream, its record in a hash.

Keys (``{id}`` is a hash tag: both keys of a stream live on one Redis Cluster slot)::

    <prefix>stream:{<stream_id>}:events  a Redis Stream; the entry of seq N has the id 0-N and
                                         one field: d=<the delta's JSON string literal>, or
                                         <event name>=<its data JSON> for any other event
    <prefix>stream:{<stream_id>}:rec     a hash: context_id, principal (absent: none),
                                         replica, state (live/ended/broken), last (seq),
                                         cancel (1 once another replica asked for it)

Entry ids are the seqs, so ``Last-Event-ID: <stream_id>:<seq>`` reads as ``XRANGE (0-<seq> +``
and ``XREAD ... 0-<seq>`` on any replica. Streams are trimmed like the replay buffer (``MAXLEN
~ replay_buffer_events``: at least that many kept) and both keys expire ``retention_s`` after
their last write (at least ``MIN_TTL_S``; while a stream runs, at least ``LIVE_TTL_S``, so a
stream whose replica died is forgotten by Redis on its own).

Writing costs the answer nothing it waits on: a session's mirror (``share``) only appends to a
list. One flusher task per process writes every stream's new events ``flush_s`` after the first
of them, in one pipeline: one ``EVALSHA`` of ``APPEND_SCRIPT`` per stream per flush (XADD per
event, the record, the expiry, atomically). The script skips seqs it already holds and marks a
stream ``broken`` when a batch does not follow on (the store lost events, or Redis restarted
empty): such a copy is never served, since an answer with a hole must not pass for a whole one.

Redis down: the streams whose batch failed stop being copied (``dropped``) and keep serving
their local readers; new streams are not copied (``unshared``, counted) until
``retry_interval_s`` has passed, when the next new stream tries again (the pattern of
``FallbackKeyLimiter``). ``degraded`` is True from the failure until a write succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from rag_service.adapters.redis_connection import RedisError, as_text, unavailable
from rag_service.ports import Clock
from rag_service.settings import RedisSettings, StreamSettings
from rag_service.streaming.session import TERMINAL_EVENTS, StreamSession
from rag_service.streaming.shared_streams import (
    CancelHandler,
    SharedState,
    SharedStreamStats,
    StreamRecord,
)
from rag_service.streaming.sse_format import DeltaEvent, NamedEvent, SessionEvent

logger = logging.getLogger(__name__)

LIVE_TTL_S = 600.0  # a running stream's keys outlive a pause of its answer by this much
MIN_TTL_S = 5.0  # an ended stream stays resumable on other replicas at least this long
_MAX_EVENTS_PER_CALL = 500  # one script call's events (Lua's unpack has a stack limit)
_MAX_BROKEN_MARKS = 10_000  # dropped streams remembered to be marked broken once Redis is back
_CLOSE_FLUSH_TIMEOUT_S = 2.0
_DELTA_FIELD = "d"

# KEYS: events, record. ARGV: ttl_ms, maxlen, first seq, terminal (0/1), n record pairs,
# the record's field/value pairs, then one field/value pair per event (seqs first, first+1, ..).
# Returns {status, cancel}: status "ok" or "gap" (the copy is broken), cancel "1" if requested.
APPEND_SCRIPT = """
local last = tonumber(redis.call('HGET', KEYS[2], 'last') or '0')
local first = tonumber(ARGV[3])
local nrec = tonumber(ARGV[5])
local status = 'ok'
if nrec > 0 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 6, 5 + 2 * nrec))
end
local at = 6 + 2 * nrec
local count = (#ARGV - at + 1) / 2
if first > last + 1 then
  redis.call('HSET', KEYS[2], 'state', 'broken')
  status = 'gap'
else
  for i = 0, count - 1 do
    local seq = first + i
    if seq > last then
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '0-' .. seq,
                 ARGV[at + 2 * i], ARGV[at + 2 * i + 1])
      last = seq
    end
  end
  redis.call('HSET', KEYS[2], 'last', last)
  if ARGV[4] == '1' then
    redis.call('HSET', KEYS[2], 'state', 'ended')
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return {status, redis.call('HGET', KEYS[2], 'cancel') or '0'}
"""
# KEYS: record. Marks a stream's copy broken, if the record is still there.
BREAK_SCRIPT = """
if redis.call('HEXISTS', KEYS[1], 'state') == 1 then
  redis.call('HSET', KEYS[1], 'state', 'broken')
end
return 0
"""
# KEYS: record. Asks for the stream's cancellation, if it is still known.
CANCEL_SCRIPT = """
if redis.call('HEXISTS', KEYS[1], 'state') == 1 then
  redis.call('HSET', KEYS[1], 'cancel', '1')
  return 1
end
return 0
"""


class _Outgoing:
    """One shared stream's events not yet written; ``add`` is the session's mirror."""

    __slots__ = ("cancel_seen", "first_seq", "on_cancel", "pending", "queued", "record", "session")

    def __init__(self, session: StreamSession, on_cancel: CancelHandler) -> None:
        self.session = session
        self.on_cancel = on_cancel
        self.pending: list[SessionEvent] = []
        self.queued = False
        self.cancel_seen = False
        self.first_seq = 1
        record = {"context_id": session.context_id, "state": SharedState.LIVE.value}
        if session.principal is not None:
            record["principal"] = session.principal
        self.record: dict[str, str] | None = record


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
        self._maxlen = str(stream_settings.replay_buffer_events)
        self._live_ttl_ms = str(round(max(stream_settings.retention_s, LIVE_TTL_S) * 1000))
        self._ended_ttl_ms = str(round(max(stream_settings.retention_s, MIN_TTL_S) * 1000))
        self._replica_id = replica_id
        self._clock = clock
        self._append_sha: str | None = None
        self._cancel_script = redis.register_script(CANCEL_SCRIPT)
        self._dirty: list[_Outgoing] = []
        self._broken_marks: deque[str] = deque(maxlen=_MAX_BROKEN_MARKS)
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self._retry_at: float | None = None  # set while Redis fails
        self._shared = self._unshared = self._dropped = 0
        self._flushes = self._events = self._commands = 0

    # -- SharedStreams: the generating side -------------------------------------------------------

    @property
    def degraded(self) -> bool:
        return self._retry_at is not None

    @property
    def replica_id(self) -> str:
        return self._replica_id

    def share(self, session: StreamSession, on_cancel: CancelHandler) -> None:
        if self._closed or (self._retry_at is not None and self._clock() < self._retry_at):
            self._unshared += 1  # served on local state only: a fallback
            return
        outgoing = _Outgoing(session, on_cancel)
        assert outgoing.record is not None
        outgoing.record["replica"] = self._replica_id
        self._shared += 1

        def mirror(event: SessionEvent) -> None:
            outgoing.pending.append(event)
            if not outgoing.queued:
                outgoing.queued = True
                self._dirty.append(outgoing)
                self._wake.set()

        session.mirror = mirror
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    async def _flush_forever(self) -> None:
        while not self._closed:
            await self._wake.wait()
            # Gather a tick's events of every stream into one round trip.
            await asyncio.sleep(self._flush_s)
            self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        batch, self._dirty = self._dirty, []
        if not batch and not self._broken_marks:
            return
        calls: list[tuple[_Outgoing, list[str]]] = []
        for outgoing in batch:
            outgoing.queued = False
            events, outgoing.pending = outgoing.pending, []
            for start in range(0, len(events), _MAX_EVENTS_PER_CALL):
                chunk = events[start : start + _MAX_EVENTS_PER_CALL]
                calls.append((outgoing, self._append_args(outgoing, chunk)))
        marks = list(self._broken_marks)
        try:
            results = await self._write(calls, marks)
        except RedisError as error:
            self._fail(batch, error)
            return
        self._broken_marks.clear()
        self._flushes += 1
        self._commands += len(calls) + len(marks)
        if self._retry_at is not None:
            logger.warning("streams are shared again: the state store answers")
            self._retry_at = None
        for (outgoing, args), result in zip(calls, results, strict=True):
            self._events += (len(args) - 5) // 2 - int(args[4])
            self._applied(outgoing, result)

    def _append_args(self, outgoing: _Outgoing, events: list[SessionEvent]) -> list[str]:
        record, outgoing.record = outgoing.record, None
        last = events[-1]
        ended = isinstance(last, NamedEvent) and last.name in TERMINAL_EVENTS
        args = [
            self._ended_ttl_ms if ended else self._live_ttl_ms,
            self._maxlen,
            str(events[0].seq),
            "1" if ended else "0",
            str(len(record) if record else 0),
        ]
        for field, value in (record or {}).items():
            args += (field, value)
        for event in events:
            if isinstance(event, DeltaEvent):
                args += (_DELTA_FIELD, event.literal.decode())
            else:
                args += (event.name, event.data.decode())
        return args

    async def _write(self, calls: list[tuple[_Outgoing, list[str]]], marks: list[str]) -> list[Any]:
        """One pipeline of the calls (loading the script first when Redis lost it)."""
        for attempt in range(2):
            if self._append_sha is None:
                self._append_sha = await self._redis.script_load(APPEND_SCRIPT)
            async with self._redis.pipeline(transaction=False) as pipe:
                for outgoing, args in calls:
                    stream_id = outgoing.session.stream_id
                    keys = (self._events_key(stream_id), self._record_key(stream_id))
                    pipe.evalsha(self._append_sha, 2, *keys, *args)
                for stream_id in marks:
                    pipe.eval(BREAK_SCRIPT, 1, self._record_key(stream_id))
                results: list[Any] = await pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in results):
                self._append_sha = None  # Redis restarted: load it again and write it all again
                continue
            for result in results:
                if isinstance(result, RedisError):
                    raise result
            return results[: len(calls)]
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _applied(self, outgoing: _Outgoing, result: Any) -> None:
        status, cancel = (as_text(value) for value in result)
        if status != "ok":
            self._drop(outgoing)
        elif cancel == "1" and not outgoing.cancel_seen:
            outgoing.cancel_seen = True
            outgoing.on_cancel(outgoing.session)  # appends its last event: flushed next
        if outgoing.session.finished and not outgoing.pending and not outgoing.queued:
            outgoing.session.mirror = None  # its last event is written: nothing more to copy

    def _fail(self, batch: list[_Outgoing], error: RedisError) -> None:
        if self._retry_at is None:
            logger.warning(
                "streams fall back to this replica's own state: %s", unavailable(error).message
            )
        self._retry_at = self._clock() + self._retry_interval_s
        for outgoing in batch:
            self._drop(outgoing)

    def _drop(self, outgoing: _Outgoing) -> None:
        """Stop copying a stream whose copy is incomplete; it keeps its local readers."""
        outgoing.session.mirror = None
        outgoing.pending = []
        self._dropped += 1
        self._broken_marks.append(outgoing.session.stream_id)

    # -- SharedStreams: the resuming side ---------------------------------------------------------

    async def record(self, stream_id: str) -> StreamRecord | None:
        try:
            fields = await self._redis.hgetall(self._record_key(stream_id))  # type: ignore[misc]
        except RedisError as error:
            raise unavailable(error) from error
        state = fields.get("state")
        if state is None:
            return None
        return StreamRecord(
            stream_id=stream_id,
            context_id=fields.get("context_id", ""),
            principal=fields.get("principal"),
            replica=fields.get("replica", ""),
            state=SharedState(state),
            last_seq=int(fields.get("last", "0")),
            cancel_requested=fields.get("cancel") == "1",
        )

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

    def stats(self) -> SharedStreamStats:
        return SharedStreamStats(
            shared=self._shared,
            unshared=self._unshared,
            dropped=self._dropped,
            flushes=self._flushes,
            events=self._events,
            commands=self._commands,
        )

    async def aclose(self) -> None:
        """Write what is pending (the last events of streams ended by the shutdown), bounded."""
        self._closed = True
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
        return f"{self._prefix}{{{stream_id}}}:events"

    def _record_key(self, stream_id: str) -> str:
        return f"{self._prefix}{{{stream_id}}}:rec"


def _event(entry_id: str, fields: dict[str, str]) -> SessionEvent:
    seq = int(entry_id.partition("-")[2])
    ((name, value),) = fields.items()
    if name == _DELTA_FIELD:
        return DeltaEvent(seq, value.encode())
    return NamedEvent(seq, name, value.encode())
