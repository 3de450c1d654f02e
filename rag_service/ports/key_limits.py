"""Per-key admission: the port, and the limits and refusals every implementation gives.

Each client key (its non-secret id, ``principal_of`` in ``api/auth.py``) may hold a number of
concurrent streams and start answers at a sustained rate with a burst (a token bucket). A new
answer asks ``KeyLimiter.admit`` for a ``StreamSlot``; the slot is given back when the answer's
*generation* ends (finished, failed, or cancelled after the disconnect grace period), not when
its client disconnects, so a key cannot open and drop streams to run more generations than its
limit (see ``StreamRegistry``).

The port is small so that a shared store (Redis, for several processes) can implement it:
``admit`` is a coroutine (a round trip there), ``release`` is not: it is called from the
registry's end-of-generation bookkeeping, which is plain callback code; an adapter that talks to
a server sends the release in the background (and its leases should expire on their own, in case
the process dies holding them).

Without client keys there is no principal, and no per-key limit applies (``start_answer``).
The refusals are part of the port's contract (the same 429, counted and logged the same, from
every implementation), so they are made here (``Refusals``): ``InMemoryKeyLimiter``
(``rag_service.limits``) and ``RedisKeyLimiter`` (``rag_service.adapters``) both use them.
"""

from __future__ import annotations

import logging
import random
from typing import Protocol

from rag_service.domain import KeyLimits, KeyLimitStats
from rag_service.errors import RateLimited
from rag_service.settings import KeyLimitSettings

logger = logging.getLogger(__name__)

# A stream slot frees when some generation of the key ends: no time can be predicted, so
# clients are told a short, spread-out wait.
STREAMS_RETRY_AFTER_S = (1.0, 3.0)
# Added to the exact wait for a token, so that clients refused together do not return together.
RATE_RETRY_JITTER_S = 1.0
# A key refused again and again is logged once per this, not once per refusal (a flood of
# refusals must not become a flood of log lines).
REFUSAL_LOG_INTERVAL_S = 60.0


class StreamSlot(Protocol):
    """One admitted stream of a key; counts against the key's stream limit until released."""

    def release(self) -> None:
        """Give the slot back; a second call does nothing. Never blocks, never raises."""
        ...


class KeyLimiter(Protocol):
    """Admission of new answers per client key."""

    async def admit(self, key_id: str) -> StreamSlot:
        """A slot for a new answer of ``key_id``, spending one request of its rate.

        Raises ``RateLimited`` (429, jittered ``retry_after_s``, ``details.reason`` ``"streams"``
        or ``"rate"``) when the key is at its stream limit or out of requests; a refusal spends
        nothing.
        """
        ...

    def stats(self) -> KeyLimitStats: ...


def limits_by_key(settings: KeyLimitSettings) -> tuple[KeyLimits, dict[str, KeyLimits]]:
    """The default limits, and the effective limits of each key that has an override."""
    default = KeyLimits(settings.streams, settings.requests_per_s, settings.burst)
    overrides = {
        key_id: KeyLimits(
            streams=default.streams if override.streams is None else override.streams,
            requests_per_s=(
                default.requests_per_s
                if override.requests_per_s is None
                else override.requests_per_s
            ),
            burst=default.burst if override.burst is None else override.burst,
        )
        for key_id, override in settings.overrides.items()
    }
    return default, overrides


def streams_refused(limits: KeyLimits, rng: random.Random) -> RateLimited:
    return RateLimited(
        f"this client key already has {limits.streams} streams generating; retry when one ends",
        retry_after_s=rng.uniform(*STREAMS_RETRY_AFTER_S),
        details={"reason": "streams", "limit": limits.streams},
    )


def rate_refused(limits: KeyLimits, wait_s: float, rng: random.Random) -> RateLimited:
    """``wait_s``: how long until the key's bucket holds a whole token again."""
    return RateLimited(
        f"this client key starts at most {limits.requests_per_s:g} answers per second "
        f"(bursts of {limits.burst}); retry later",
        retry_after_s=wait_s + rng.uniform(0.0, RATE_RETRY_JITTER_S),
        details={"reason": "rate", "limit": limits.requests_per_s, "burst": limits.burst},
    )


class Refusals:
    """The refusals of one limiter, as every implementation gives them: built
    (``streams_refused``, ``rate_refused``, jittered by ``rng``), counted by reason (for
    ``KeyLimitStats``) and logged, at most one line per key per ``REFUSAL_LOG_INTERVAL_S`` of
    the clock ``now`` is read from. It holds one time per key refused: no more than there are
    client keys, as only authenticated keys reach a limiter."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._logged_at: dict[str, float] = {}
        self.streams = 0  # refusals because the key was at its stream limit
        self.rate = 0  # refusals because the key was out of requests

    def at_stream_limit(self, key_id: str, limits: KeyLimits, now: float) -> RateLimited:
        self.streams += 1
        return self._logged(key_id, streams_refused(limits, self._rng), now)

    def out_of_requests(
        self, key_id: str, limits: KeyLimits, wait_s: float, now: float
    ) -> RateLimited:
        """``wait_s``: how long until the key's bucket holds a whole token again."""
        self.rate += 1
        return self._logged(key_id, rate_refused(limits, wait_s, self._rng), now)

    def _logged(self, key_id: str, error: RateLimited, now: float) -> RateLimited:
        logged_at = self._logged_at.get(key_id)
        if logged_at is None or now - logged_at >= REFUSAL_LOG_INTERVAL_S:
            self._logged_at[key_id] = now
            logger.warning("client key %s refused (429): %s", key_id, error.message)
        return error
