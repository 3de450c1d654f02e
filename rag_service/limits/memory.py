"""Per-key limits held in this process's memory: right for one process per deployment.

Several processes behind one address would each grant a key its full limits; a shared store
(issue #14: Redis) implements the same ``KeyLimiter`` port for that.

Memory: one small record per key that has called recently. Only authenticated keys reach the
limiter (``client_principal`` refuses unknown ones with 401 first), so there are never more
records than configured client keys; still, a key that stops calling is forgotten once it holds
no stream and its bucket has refilled (a record then equals a fresh one), checked at most every
``SWEEP_INTERVAL_S``.
"""

from __future__ import annotations

import random
import time

from rag_service.domain import KeyLimits, KeyLimitStats
from rag_service.ports import Clock, Refusals, StreamSlot, limits_by_key
from rag_service.settings import KeyLimitSettings

SWEEP_INTERVAL_S = 60.0


class _KeyState:
    """A key's generating streams and its token bucket (``tokens`` as of ``updated_at``)."""

    __slots__ = ("streams", "tokens", "updated_at")

    def __init__(self, tokens: float, updated_at: float) -> None:
        self.streams = 0
        self.tokens = tokens
        self.updated_at = updated_at

    def tokens_at(self, now: float, limits: KeyLimits) -> float:
        refill = max(0.0, now - self.updated_at) * limits.requests_per_s
        return min(float(limits.burst), self.tokens + refill)


class _MemorySlot:
    __slots__ = ("_state",)

    def __init__(self, state: _KeyState) -> None:
        self._state: _KeyState | None = state

    def release(self) -> None:
        state, self._state = self._state, None
        if state is not None:
            state.streams -= 1


class InMemoryKeyLimiter:
    """``KeyLimiter`` over a dict of key records; ``clock`` (monotonic seconds) and ``rng`` (the
    ``Retry-After`` jitter) are injectable for tests."""

    def __init__(
        self,
        settings: KeyLimitSettings,
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._default, self._overrides = limits_by_key(settings)
        self._clock = clock
        self._keys: dict[str, _KeyState] = {}
        self._swept_at = clock()
        self._refusals = Refusals(rng or random.Random())  # jittering their Retry-After

    async def admit(self, key_id: str) -> StreamSlot:
        now = self._clock()
        self._sweep(now)
        limits = self._limits(key_id)
        state = self._keys.get(key_id)
        if state is None:
            state = self._keys[key_id] = _KeyState(float(limits.burst), now)
        else:
            state.tokens = state.tokens_at(now, limits)
            state.updated_at = now
        # The stream limit first: a refusal spends no token, so a key at its stream limit
        # still has its burst when a stream ends.
        if state.streams >= limits.streams:
            raise self._refusals.at_stream_limit(key_id, limits, now)
        if state.tokens < 1.0:
            wait_s = (1.0 - state.tokens) / limits.requests_per_s
            raise self._refusals.out_of_requests(key_id, limits, wait_s, now)
        state.tokens -= 1.0
        state.streams += 1
        return _MemorySlot(state)

    def stats(self) -> KeyLimitStats:
        return KeyLimitStats(
            refused_streams=self._refusals.streams,
            refused_rate=self._refusals.rate,
            keys_tracked=len(self._keys),
        )

    def _limits(self, key_id: str) -> KeyLimits:
        return self._overrides.get(key_id, self._default)

    def _sweep(self, now: float) -> None:
        """Forget the keys whose record equals a fresh one: no stream, a full bucket."""
        if now - self._swept_at < SWEEP_INTERVAL_S:
            return
        self._swept_at = now
        idle = []
        for key_id, state in self._keys.items():
            limits = self._limits(key_id)
            if state.streams == 0 and state.tokens_at(now, limits) >= limits.burst:
                idle.append(key_id)
        for key_id in idle:
            del self._keys[key_id]
