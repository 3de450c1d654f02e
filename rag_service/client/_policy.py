"""How hard the client tries: attempts, backoff, timeouts and the overall deadline."""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """Reconnection and deadline settings of one answer.

    - ``max_attempts``: tries after the first request, each a reconnect (resume) or a repeat of
      a request refused with 429/5xx. A response that brings new events resets the count, so a
      long answer may survive more drops than this, each one recovered.
    - Backoff is full jitter: the n-th try waits a uniform time between the server's ``retry:``
      hint (the floor; 0 before one arrived) and ``min(max_delay_s, base_delay_s * 2**(n-1))``.
      A refusal's ``Retry-After`` is a floor too.
    - ``deadline_s`` bounds one answer from its first request to its last event; a wait that
      would end past it is not started (``DeadlineExceeded`` at once).
    - ``connect_timeout_s``/``read_timeout_s`` bound each connection and each read (the service
      sends a keep-alive comment at least every 15 s).
    """

    max_attempts: int = 10
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    deadline_s: float = 300.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 45.0

    def __post_init__(self) -> None:
        if self.max_attempts < 0:
            raise ValueError("max_attempts must not be negative")
        positive = (
            self.base_delay_s,
            self.max_delay_s,
            self.deadline_s,
            self.connect_timeout_s,
            self.read_timeout_s,
        )
        if min(positive) <= 0:
            raise ValueError("delays, timeouts and the deadline must be positive")

    def delay_s(self, attempt: int, floor_s: float, rng: random.Random) -> float:
        """The wait before try ``attempt`` (1-based), at least ``floor_s``."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** min(attempt - 1, 30))
        return rng.uniform(floor_s, max(floor_s, ceiling))

    def timeout(self, remaining_s: float) -> httpx.Timeout:
        """Per-request timeouts, none beyond the time left before the deadline."""
        left = max(remaining_s, 0.001)
        connect = min(self.connect_timeout_s, left)
        return httpx.Timeout(connect, read=min(self.read_timeout_s, left), pool=connect)
