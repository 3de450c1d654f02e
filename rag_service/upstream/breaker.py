"""A circuit breaker per upstream: stop sending requests to an upstream that keeps failing.

closed --(failure_threshold consecutive failed attempts)--> open --(open period over)-->
half-open --(the one probe succeeds)--> closed, or --(the probe fails)--> open again for twice as
long (up to ``max_open_s``). Open periods are jittered by +-20 % so that several service replicas
do not probe in step. Callers ask for a :class:`Permit` before each request and report its outcome
with exactly one of ``record_success``, ``record_failure`` or ``release`` (a probe abandoned
without an outcome gives its slot back). Streams waiting for the circuit to close use
:meth:`wait_for_change`, which wakes them on every state change.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from enum import Enum, StrEnum

from rag_service.settings import BreakerSettings

OPEN_JITTER = 0.2  # open periods last (1 +- OPEN_JITTER) times their nominal length


class BreakerState(StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


class Permit(Enum):
    normal = "normal"  # circuit closed: go ahead
    probe = "probe"  # circuit half-open: this request decides whether it closes
    denied = "denied"  # circuit open, or half-open with the probe already out


StateListener = Callable[[BreakerState], None]


class CircuitBreaker:
    def __init__(
        self,
        settings: BreakerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._rng = rng or random.Random()
        self._state = BreakerState.closed
        self._failures = 0
        self._open_for = settings.open_s  # nominal length of the current/next open period
        self._open_until = 0.0
        self._probe_out = False
        self._changed = asyncio.Event()
        self._listeners: list[StateListener] = []

    def subscribe(self, listener: StateListener) -> None:
        """Call ``listener`` with the new state on every transition (metrics)."""
        self._listeners.append(listener)

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.open and self._clock() >= self._open_until:
            self._transition(BreakerState.half_open)
        return self._state

    def try_acquire(self) -> Permit:
        state = self.state
        if state is BreakerState.closed:
            return Permit.normal
        if state is BreakerState.half_open and not self._probe_out:
            self._probe_out = True
            return Permit.probe
        return Permit.denied

    def record_success(self, permit: Permit) -> None:
        if permit is Permit.probe:
            self._probe_out = False
            self._failures = 0
            self._open_for = self._settings.open_s
            self._transition(BreakerState.closed)
        elif permit is Permit.normal and self._state is BreakerState.closed:
            self._failures = 0

    def record_failure(self, permit: Permit) -> None:
        if permit is Permit.probe:
            self._probe_out = False
            self._open_for = min(self._settings.max_open_s, self._open_for * 2)
            self._open()
        elif permit is Permit.normal and self._state is BreakerState.closed:
            self._failures += 1
            if self._failures >= self._settings.failure_threshold:
                self._open_for = self._settings.open_s
                self._open()

    def release(self, permit: Permit) -> None:
        """The request ended without a verdict (cancelled): a probe slot becomes free again."""
        if permit is Permit.probe and self._probe_out:
            self._probe_out = False
            self._notify()

    def seconds_until_probe(self) -> float | None:
        """0 when a request may go now; None while a probe is out (wait for its verdict)."""
        state = self.state
        if state is BreakerState.open:
            return max(0.0, self._open_until - self._clock())
        if state is BreakerState.half_open and self._probe_out:
            return None
        return 0.0

    def retry_after_s(self) -> float:
        """A jittered hint for callers that fail fast: the rest of the open period and a bit."""
        remaining = self.seconds_until_probe() or 0.0
        return remaining + self._rng.uniform(0.1, 0.5) * self._open_for

    async def wait_for_change(
        self, timeout_s: float, sleep: Callable[[float], Awaitable[None]]
    ) -> None:
        """Return on the next state change or after ``timeout_s`` (slept with ``sleep``)."""
        if timeout_s <= 0:
            return
        changed = asyncio.ensure_future(self._changed.wait())
        timer = asyncio.ensure_future(sleep(timeout_s))
        try:
            await asyncio.wait({changed, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
            timer.cancel()
            await asyncio.gather(changed, timer, return_exceptions=True)

    def _open(self) -> None:
        jitter = self._rng.uniform(1 - OPEN_JITTER, 1 + OPEN_JITTER)
        self._open_until = self._clock() + self._open_for * jitter
        self._failures = 0
        self._transition(BreakerState.open)

    def _transition(self, state: BreakerState) -> None:
        if state is self._state and state is not BreakerState.open:
            return
        self._state = state
        self._notify()
        for listener in self._listeners:
            listener(state)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self._state.value}, failures={self._failures})"
