"""Percentiles of latency samples, the one way every streaming benchmark reports them."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(ordered: list[float], share: float) -> float:
    """Nearest-rank percentile of already sorted ``ordered`` (``share`` in 0..1).

    Nearest rank rather than interpolation: p99 of 200 samples is the 198th value, a latency some
    request really had.
    """
    if not ordered:
        raise ValueError("no samples")
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def summarise_ms(seconds: Iterable[float]) -> dict[str, float | int]:
    """Count, median, p90, p99 and max of ``seconds``, in milliseconds (two decimals)."""
    ordered = sorted(seconds)
    if not ordered:
        return {"count": 0}
    return {
        "count": len(ordered),
        "median_ms": round(percentile(ordered, 0.5) * 1000, 2),
        "p90_ms": round(percentile(ordered, 0.9) * 1000, 2),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }
