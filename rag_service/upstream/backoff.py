"""Backoff delays between attempts: capped exponential growth with jitter.

Full jitter (the default) draws uniformly from ``[0, min(cap, base * 2**n)]``, so clients that
failed together spread over the whole window instead of returning in a bunch (AWS, "Exponential
Backoff and Jitter"). Equal jitter keeps at least half the step; decorrelated jitter grows from
the previous delay. An upstream ``Retry-After`` is a floor: the wait is at least that long, plus up
to 10 % so that clients told the same instant do not all come back at it.
"""

from __future__ import annotations

import random

from rag_service.settings import JitterMode, RetrySettings

RETRY_AFTER_JITTER = 0.1  # fraction of a Retry-After added on top, at most
_MAX_EXPONENT = 60  # 2**60 * any sane base exceeds any cap; avoids float overflow


class BackoffSchedule:
    """The delays of one answer's retries; ``next_delay`` is called once per retry."""

    __slots__ = ("_base", "_cap", "_jitter", "_previous", "_retries", "_rng")

    def __init__(self, settings: RetrySettings, rng: random.Random) -> None:
        self._base = settings.base_delay_s
        self._cap = settings.max_delay_s
        self._jitter = settings.jitter
        self._rng = rng
        self._retries = 0
        self._previous = settings.base_delay_s

    def next_delay(self, retry_after_s: float | None = None) -> float:
        """The wait before the next attempt; ``retry_after_s`` is the upstream's minimum."""
        delay = self._jittered_step()
        self._retries += 1
        if retry_after_s is not None:
            floor = retry_after_s + self._rng.uniform(0.0, RETRY_AFTER_JITTER * retry_after_s)
            delay = max(delay, floor)
        return delay

    def _jittered_step(self) -> float:
        step = min(self._cap, self._base * 2.0 ** min(self._retries, _MAX_EXPONENT))
        if self._jitter is JitterMode.full:
            return self._rng.uniform(0.0, step)
        if self._jitter is JitterMode.equal:
            return step / 2 + self._rng.uniform(0.0, step / 2)
        delay = min(self._cap, self._rng.uniform(self._base, self._previous * 3))
        self._previous = delay
        return delay


class BackoffPolicy:
    """Makes a fresh :class:`BackoffSchedule` per answer from shared settings and rng."""

    def __init__(self, settings: RetrySettings, rng: random.Random) -> None:
        self._settings = settings
        self._rng = rng

    def schedule(self) -> BackoffSchedule:
        return BackoffSchedule(self._settings, self._rng)
