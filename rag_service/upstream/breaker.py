"""A circuit breaker per upstream: stop sending requests to an upstream that keeps failing.

closed --(failure_threshold consecutive failed attempts)--> open --(open period over)-->
half-open --(the one probe succeeds)--> closed, or --(the probe fails)--> open again for twice as
long (up to ``max_open_s``). Open periods are jittered by +-20 % so that several service replicas
do not probe in step. Callers ask for a :class:`Permit` before each request and report its outcome
with exactly one of ``record_success``, ``record_failure`` or ``release`` (a probe abandoned
without an outcome gives its slot back). Streams waiting for the circuit to close use
:meth:`wait_for_change`, which wakes them on every state change.

Across replicas (``BreakerSharing``, rag_service/upstream/breaker_sharing.py) the breaker also
takes states from other replicas: ``adopt_open`` (another replica's circuit opened: this one
parks its requests until the same reopen time), ``adopt_closed`` (another replica's probe
succeeded), and ``probe_elsewhere`` (another replica holds the one half-open probe: wait for its
verdict, at most a lease). ``adopting`` tells transition listeners which transitions those are.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from enum import Enum

from rag_service.domain import BreakerState
from rag_service.settings import BreakerSettings

OPEN_JITTER = 0.2  # open periods last (1 +- OPEN_JITTER) times their nominal length


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
        # Set while another replica holds the half-open probe (``probe_elsewhere``): its end.
        self._probe_elsewhere_until: float | None = None
        self._adopting = False
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

    @property
    def adopting(self) -> bool:
        """True during a transition taken from another replica (listeners: not ours to share)."""
        return self._adopting

    @property
    def open_for_s(self) -> float:
        """Nominal length of the current (or next) open period."""
        return self._open_for

    def open_remaining_s(self) -> float:
        """Seconds left of the open period (0 unless open)."""
        if self._state is not BreakerState.open:
            return 0.0
        return max(0.0, self._open_until - self._clock())

    def adopt_open(self, remaining_s: float, open_for_s: float) -> bool:
        """Another replica's circuit for this upstream is open for ``remaining_s`` more: open
        this one until the same time, unless it is open at least that long already. True when
        adopted."""
        until = self._clock() + remaining_s
        if remaining_s <= 0 or (self.state is BreakerState.open and self._open_until >= until):
            return False
        self._open_for = open_for_s
        self._open_until = until
        self._failures = 0
        self._probe_elsewhere_until = None
        self._adopt(BreakerState.open)
        return True

    def adopt_closed(self) -> bool:
        """Another replica's probe succeeded: the upstream answers again. True when adopted."""
        if self._state is BreakerState.closed:
            return False
        self._probe_out = False
        self._probe_elsewhere_until = None
        self._failures = 0
        self._open_for = self._settings.open_s
        self._adopt(BreakerState.closed)
        return True

    def probe_elsewhere(self, permit: Permit, lease_s: float) -> None:
        """``permit`` (a probe) is not used: another replica probes. Requests wait for its
        verdict (``adopt_open`` / ``adopt_closed``) or, if none comes, ``lease_s``."""
        if permit is Permit.probe and self._probe_out:
            self._probe_elsewhere_until = self._clock() + lease_s

    def try_acquire(self) -> Permit:
        state = self.state
        self._end_probe_elsewhere()
        if state is BreakerState.closed:
            return Permit.normal
        if state is BreakerState.half_open and not self._probe_out:
            self._probe_out = True
            return Permit.probe
        return Permit.denied

    def record_success(self, permit: Permit) -> None:
        if permit is Permit.probe:
            self._probe_out = False
            self._probe_elsewhere_until = None
            self._failures = 0
            self._open_for = self._settings.open_s
            self._transition(BreakerState.closed)
        elif permit is Permit.normal and self._state is BreakerState.closed:
            self._failures = 0

    def record_failure(self, permit: Permit) -> None:
        if permit is Permit.probe:
            self._probe_out = False
            self._probe_elsewhere_until = None
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
        self._end_probe_elsewhere()
        if state is BreakerState.half_open and self._probe_out:
            until = self._probe_elsewhere_until
            return None if until is None else max(0.0, until - self._clock())
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

    def _end_probe_elsewhere(self) -> None:
        until = self._probe_elsewhere_until
        if until is not None and self._clock() >= until:  # its verdict never came
            self._probe_elsewhere_until = None
            self._probe_out = False

    def _adopt(self, state: BreakerState) -> None:
        self._adopting = True
        try:
            self._transition(state)
        finally:
            self._adopting = False

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
