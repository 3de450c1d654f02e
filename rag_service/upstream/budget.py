"""A process-wide retry budget: a token bucket that keeps retries a fraction of requests.

Every first attempt deposits ``ratio`` tokens and time adds ``min_per_s`` per second, both capped
at ``burst``; a retry spends one token. When the upstream keeps failing, retries therefore stay
near ``ratio`` of the request rate (plus a small constant floor) instead of multiplying load by
the number of attempts. One instance is shared by every stream of the process.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rag_service.settings import BudgetSettings


class RetryBudget:
    def __init__(
        self, settings: BudgetSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ratio = settings.ratio
        self._per_second = settings.min_per_s
        self._burst = settings.burst
        self._clock = clock
        self._tokens = settings.burst  # start full: a fresh process may retry at once
        self._refilled_at = clock()

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    def record_request(self) -> None:
        """A first attempt was made: it earns ``ratio`` of a retry."""
        self._refill()
        self._tokens = min(self._burst, self._tokens + self._ratio)

    def try_spend(self) -> bool:
        """Take one token for a retry; False (and nothing taken) when the bucket is short."""
        self._refill()
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._refilled_at)
        self._refilled_at = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._per_second)

    def __repr__(self) -> str:
        return f"RetryBudget(tokens={self._tokens:.2f}, burst={self._burst})"
