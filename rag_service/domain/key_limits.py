"""The per-key limits of a client key, and what the limiters count."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeyLimits:
    """The limits of one key: its override where set, else the defaults."""

    streams: int
    requests_per_s: float
    burst: int


@dataclass(frozen=True)
class KeyLimitStats:
    """Counters for ``/metrics``: refusals by reason since start, the keys held in memory
    (``None`` when the adapter keeps them elsewhere), and the admissions decided on local state
    because the shared store was down (``FallbackKeyLimiter``)."""

    refused_streams: int = 0
    refused_rate: int = 0
    keys_tracked: int | None = None
    fallbacks: int = 0
