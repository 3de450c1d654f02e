"""One answer's generation state: its numbered events, whether it has ended, who is reading.

A session is written by exactly one generation (see ``registry``) and read by any number of HTTP
responses. Readers never poll: a reader that has caught up hands the session a future
(``notify``/``change_waiter``) and sleeps on it until the next append or the end; it then reads
every event that came meanwhile (``read_events``) in one go. The list of futures is created at
first use, so an unread session costs nothing.

Event payloads (the ``data`` JSON of each event name) are built here and nowhere else.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from rag_service.errors import RagServiceError
from rag_service.limits import StreamSlot
from rag_service.ports import Clock
from rag_service.streaming.replay_buffer import ReplayBuffer
from rag_service.streaming.sse_format import SessionEvent
from rag_service.upstream_events import (
    Completed,
    Failed,
    Resumed,
    RetryNotice,
    TextDelta,
    UpstreamEvent,
)


class StreamSession:
    __slots__ = (
        "_buffer",
        "_clock",
        "_finished",
        "_first_delta_at",
        "_sleepers",
        "_started_at",
        "context_id",
        "expiry",
        "principal",
        "readers",
        "slot",
        "stream_id",
        "task",
    )

    def __init__(
        self,
        *,
        stream_id: str,
        context_id: str,
        principal: str | None,
        buffer_capacity: int,
        clock: Clock,
        started_at: float,
    ) -> None:
        self.stream_id = stream_id
        self.context_id = context_id
        self.principal = principal
        self.readers = 0
        # Owned by the registry: the generation task, the grace-period timer, and the key's
        # stream slot (per-key limits), held until the generation ends.
        self.task: asyncio.Task[None] | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self.slot: StreamSlot | None = None
        self._buffer = ReplayBuffer(buffer_capacity)
        self._clock = clock
        self._started_at = started_at
        self._first_delta_at: float | None = None
        self._finished = False
        self._sleepers: list[asyncio.Future[None]] | None = None

    @property
    def finished(self) -> bool:
        """True once the terminal ``done`` or ``error`` event has been appended."""
        return self._finished

    @property
    def first_seq(self) -> int:
        return self._buffer.first_seq

    @property
    def last_seq(self) -> int:
        return self._buffer.last_seq

    @property
    def nbytes(self) -> int:
        """What its events take in the replay buffer (``ReplayBuffer.nbytes``), O(1)."""
        return self._buffer.nbytes

    def read_events(self, after_seq: int, max_events: int) -> list[SessionEvent]:
        """See ``ReplayBuffer.read_events``."""
        return self._buffer.read_events(after_seq, max_events)

    def notify(self, waiter: asyncio.Future[None]) -> None:
        """Resolve ``waiter`` at the next append or at the end (at once when already ended).

        The reader may resolve or cancel ``waiter`` itself meanwhile (a disconnect, a ping).
        """
        if self._finished:
            if not waiter.done():
                waiter.set_result(None)
        elif self._sleepers is None:
            self._sleepers = [waiter]
        else:
            waiters = self._sleepers
            if len(waiters) > self.readers:
                # Futures a reader resolved itself (pings while the answer is idle) would pile
                # up until the next append; each reader waits on at most one future at a time.
                waiters[:] = [w for w in waiters if not w.done()]
            waiters.append(waiter)

    def change_waiter(self) -> asyncio.Future[None]:
        """A new future resolved at the next append (or at once when the session has finished)."""
        waiter = asyncio.get_running_loop().create_future()
        self.notify(waiter)
        return waiter

    def publish_meta(self, payload: dict[str, Any] | tuple[bytes, ...]) -> None:
        """The ``meta`` event: its payload, or its JSON in parts (``meta_json``)."""
        if isinstance(payload, dict):
            self._append("meta", payload)
        else:
            self._buffer.append_event_parts("meta", payload)
            self._wake()

    def apply(self, item: UpstreamEvent) -> None:
        """Append the event for one upstream item; a terminal item finishes the session."""
        if self._finished:
            return
        if isinstance(item, TextDelta):
            self._append_delta(item.text)
        elif isinstance(item, RetryNotice):
            self._append("retry", retry_payload(item))
        elif isinstance(item, Resumed):
            self._append("resumed", {"attempt": item.attempt, "strategy": item.strategy})
        elif isinstance(item, Completed):
            self._append("done", self._done_payload(item))
            self._finish()
        elif isinstance(item, Failed):
            self.fail(item.error)

    def fail(self, error: RagServiceError) -> None:
        """End the stream with an ``error`` event, unless it has already ended."""
        if self._finished:
            return
        self._append("error", error.to_payload())
        self._finish()

    def _append_delta(self, text: str) -> None:
        if not text:
            return  # an empty delta carries nothing and would only cost a seq
        if self._first_delta_at is None:
            self._first_delta_at = self._clock()
        self._buffer.append_delta(text)
        self._wake()

    def _append(self, event: str, payload: dict[str, Any]) -> None:
        self._buffer.append_event(event, payload)
        self._wake()

    def _finish(self) -> None:
        self._finished = True
        self._wake()

    def _wake(self) -> None:
        waiters = self._sleepers
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            waiters.clear()  # kept for the next wait: one list per session, not one per event

    def _done_payload(self, item: Completed) -> dict[str, Any]:
        now = self._clock()
        ttft_ms = None
        if self._first_delta_at is not None:
            ttft_ms = _ms(self._first_delta_at - self._started_at)
        return {
            "finish_reason": item.finish_reason,
            "usage": _finite_json(item.usage),
            # Measured from the request's arrival: retrieval and upstream retries included.
            "timings": {"ttft_ms": ttft_ms, "total_ms": _ms(now - self._started_at)},
            "attempts": item.attempts,
        }


def retry_payload(item: RetryNotice) -> dict[str, Any]:
    return {
        "attempt": item.attempt,
        "max_attempts": item.max_attempts,
        "delay_ms": _ms(item.delay_s),
        "reason": item.reason,
    }


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _finite_json(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """``usage`` without non-finite floats, which have no JSON spelling."""
    if usage is None:
        return None
    return {
        key: value
        for key, value in usage.items()
        if not (isinstance(value, float) and not math.isfinite(value))
    }
