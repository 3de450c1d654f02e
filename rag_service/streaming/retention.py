"""The ended streams a registry keeps for resumes: in order, with their bytes and their time.

An ended stream nobody reads is *retained*: resumable for ``retention_s`` from the moment it was
retained, and while the replay buffers of all retained streams hold at most ``max_bytes``. The
streams are kept in the order they were retained, which is also the order their time runs out
(one clock, one ``retention_s``), so finding the expired ones and the one to evict first both
look at the oldest only: no timer and no search per stream. The registry (``registry.py``) owns
the sessions themselves and removes the ones this names.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from rag_service.ports import Clock


class _Retained(NamedTuple):
    until: float  # the clock's time when it is forgotten
    nbytes: int  # its replay buffer's bytes when retained (an ended stream's buffer is final)


class RetainedStreams:
    """Stream ids of retained sessions, oldest first, with their bytes and expiry times."""

    __slots__ = ("_clock", "_max_bytes", "_nbytes", "_retention_s", "_streams")

    def __init__(self, *, retention_s: float, max_bytes: int, clock: Clock) -> None:
        self._retention_s = retention_s
        self._max_bytes = max_bytes
        self._clock = clock
        # An OrderedDict: its oldest entry is found in O(1) however many were taken before it
        # (a plain dict's first entry is found by skipping the deleted slots in front).
        self._streams: OrderedDict[str, _Retained] = OrderedDict()
        self._nbytes = 0

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, stream_id: str) -> bool:
        return stream_id in self._streams

    @property
    def nbytes(self) -> int:
        """The retained replay buffers' bytes together."""
        return self._nbytes

    def add(self, stream_id: str, nbytes: int) -> None:
        """Retain ``stream_id`` from now on (as the newest)."""
        self._streams[stream_id] = _Retained(self._clock() + self._retention_s, nbytes)
        self._nbytes += nbytes

    def discard(self, stream_id: str) -> None:
        """Stop retaining ``stream_id`` (read again, or removed); nothing if it is not retained."""
        retained = self._streams.pop(stream_id, None)
        if retained is not None:
            self._nbytes -= retained.nbytes

    def oldest(self) -> str | None:
        """The longest-retained stream: the first to evict."""
        return next(iter(self._streams), None)

    def over_bytes(self) -> bool:
        return self._nbytes > self._max_bytes

    def oldest_expired(self) -> str | None:
        """The oldest stream if its time is up (then maybe more: ask again once it is gone)."""
        for stream_id, retained in self._streams.items():
            return stream_id if retained.until <= self._clock() else None
        return None

    def seconds_to_next_expiry(self) -> float | None:
        """How long until the oldest stream's time is up (0 if it is); None when none is held."""
        for retained in self._streams.values():
            return max(0.0, retained.until - self._clock())
        return None
