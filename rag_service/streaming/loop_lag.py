"""How far behind its event loop a process runs: the signal for refusing new streams.

Every stream of a process shares one event loop, and a token goes out in the loop iteration
that reads it from the upstream. Past the process's capacity (docs/benchmarks.md: about 5,000
streams at 5 tokens/s on 2 cores) each iteration grows longer: open streams fall behind, and
a new stream, whose set-up needs several iterations, waits seconds for its first token while
adding to the load. ``StreamRegistry.check_capacity`` therefore refuses new streams with 503 +
``Retry-After`` while the loop is behind by more than ``stream.shed_loop_lag_ms``. A refusal
costs one iteration and nothing upstream; resumes of running streams are never refused.

The lag is measured the usual way: a timer due every ``interval_s``, and how late it fires.
Between firings, ``lag_s`` also counts how overdue the pending timer already is, so a loop
stuck in one long iteration reads as behind before the timer gets to run. One late firing
(a garbage collection, a slow callback) sheds new streams only until the next firing on time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

DEFAULT_INTERVAL_S = 0.05


class LoopLagMonitor:
    """Measures the running event loop's lag while started (``start``, ``close``)."""

    __slots__ = ("_due", "_handle", "_interval_s", "_last_lag_s", "_loop", "_observe")

    def __init__(
        self,
        interval_s: float = DEFAULT_INTERVAL_S,
        *,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        """``observe`` is given each firing's lateness in seconds (a metrics histogram)."""
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._interval_s = interval_s
        self._observe = observe
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._last_lag_s = 0.0

    def start(self) -> None:
        """Start measuring on the running loop (call from inside it)."""
        if self._handle is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._schedule()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._last_lag_s = 0.0

    def lag_s(self) -> float:
        """Seconds the loop is behind now: the last firing's lateness, or more if the next
        firing is overdue already. 0.0 while not started."""
        if self._handle is None or self._loop is None:
            return 0.0
        return max(self._last_lag_s, self._loop.time() - self._due)

    def _schedule(self) -> None:
        assert self._loop is not None
        self._due = self._loop.time() + self._interval_s
        self._handle = self._loop.call_at(self._due, self._fire)

    def _fire(self) -> None:
        assert self._loop is not None
        self._last_lag_s = max(0.0, self._loop.time() - self._due)
        self._schedule()
        if self._observe is not None:
            self._observe(self._last_lag_s)
