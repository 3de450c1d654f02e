"""``StallWatch``: one timer for the read timeouts of all of a pool's connections.

A streamed answer keeps its upstream connection for minutes, and thousands are open at once.
A timer per connection (uvloop's handle, its libuv timer and the bound callback: about 550
bytes) would be the largest single item of an open stream's upstream side; one periodic check
over the watched connections costs one call per connection per period instead (~5,000 calls a
second at 5,000 streams: a fraction of a millisecond).

The period is a quarter of the shortest read timeout added since the timer last started (at
least 10 ms, at most 1 s), so a stall is reported between 1 and 1.25 read timeouts after the
last byte (up to 10 ms later for a timeout under 40 ms). Each connection compares the time of
its own last read, so a connection is never failed early. The timer runs only while something
is watched; when nothing is, it stops, and the period starts afresh with the next connection.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

MIN_PERIOD_S = 0.01
MAX_PERIOD_S = 1.0
_PERIODS_PER_TIMEOUT = 4


class Watched(Protocol):
    def check_stall(self, now: float) -> None:
        """Fail the exchange if its read timeout has passed since its last read; a connection
        with nothing to watch any more unwatches itself."""


class StallWatch:
    """Calls ``check_stall(now)`` on every watched connection once per period."""

    def __init__(self) -> None:
        self._watched: set[Watched] = set()
        self._period_s = MAX_PERIOD_S
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._watched)

    def add(self, connection: Watched, read_timeout_s: float) -> None:
        self._watched.add(connection)
        period = min(MAX_PERIOD_S, max(MIN_PERIOD_S, read_timeout_s / _PERIODS_PER_TIMEOUT))
        if self._timer is not None:
            if period >= self._period_s:
                return
            self._timer.cancel()  # a shorter timeout than any so far: check sooner from now on
        self._period_s = period
        self._timer = asyncio.get_running_loop().call_later(period, self._tick)

    def discard(self, connection: Watched) -> None:
        self._watched.discard(connection)

    def close(self) -> None:
        self._watched.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for connection in list(self._watched):  # a check may unwatch its connection
            connection.check_stall(now)
        if self._watched:
            self._timer = loop.call_later(self._period_s, self._tick)
        else:
            self._timer = None
