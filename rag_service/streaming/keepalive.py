"""Keep-alive pings for every open stream, from one timer per process instead of one per reader.

A stream that has written nothing for a while must send a ``: ping`` comment, or proxies and load
balancers may close it as idle. Giving each reader its own timeout (an ``asyncio.wait`` with a
timeout per event) costs a timer, callbacks and a set for every event of every stream. Instead
one timer ticks every half ping interval over all open readers:

- a reader that wrote something since the previous tick is only marked as quiet;
- a reader still quiet at the next tick is told to ping (``Pingable.ping_due``).

So no connection stays silent for longer than the ping interval (a reader is pinged after
between half and the whole interval of silence), and writing an event costs one attribute store
(the reader's ``wrote`` flag). The timer runs only while readers are registered.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Pingable(Protocol):
    """A reader the ticker looks after (``SessionResponse``)."""

    wrote: bool  # set by the reader at every write, cleared by the ticker

    def ping_due(self) -> None:
        """Wake the reader to send a ping (it has been silent for at least half the interval)."""


class KeepAlive:
    __slots__ = ("_period_s", "_readers", "_timer")

    def __init__(self, ping_interval_s: float) -> None:
        self._period_s = ping_interval_s / 2
        self._readers: set[Pingable] = set()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._readers)

    def add(self, reader: Pingable) -> None:
        """Look after ``reader`` from now on (call from the event loop)."""
        self._readers.add(reader)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._period_s, self._tick)

    def discard(self, reader: Pingable) -> None:
        self._readers.discard(reader)

    def close(self) -> None:
        """Stop ticking (shutdown); readers still registered get no more pings."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._readers.clear()

    def _tick(self) -> None:
        self._timer = None
        for reader in self._readers:
            if reader.wrote:
                reader.wrote = False
            else:
                reader.ping_due()
        if self._readers:
            self._timer = asyncio.get_running_loop().call_later(self._period_s, self._tick)
