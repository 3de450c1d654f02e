"""Per-key limits in Redis: one key's streams and rate, shared by every process and replica.

Two Redis keys per client key, the key id in braces (a Redis Cluster hash tag, so that both
live on one shard and one script may touch both):

- ``{prefix}limits:{<key id>}:bucket``, a hash: the token bucket (``tokens`` as of ``at``). It
  expires once it would be full again (plus a margin): an idle key costs nothing.
- ``{prefix}limits:{<key id>}:streams``, a sorted set: one member per stream slot, scored by the
  time its lease ends. It expires with the last lease.

**Atomic.** An admission is one Lua script (``register_script``: EVALSHA, loaded again by the
client if the server lost it): it drops lapsed leases, counts the slots, refills and checks the
bucket, and takes a slot and a token, with no other command in between. MULTI/EXEC cannot
branch on what it reads; with WATCH it would retry under contention, which is exactly when one
hot key is admitted by many replicas at once.

**Time** is Redis's (``TIME`` in the script), so the replicas' clocks do not matter. (Tests
inject a clock instead; its reading is then passed to the scripts.)

**Leases.** A slot is a lease of ``RedisSettings.slot_lease_s``, renewed by its process every
third of it while the generation runs (all held slots, one pipeline per renewal). A process
that dies holding slots frees them at most one lease after its last renewal; one that loses
Redis for longer than a lease has its slots lapse, and puts them back (the renewal re-adds a
running stream's slot) once Redis answers again: a Redis restarted empty thus relearns the
streams running.

**Release** is the port's synchronous call: the slot stops being renewed at once, and its
removal is sent in the background (if that fails, the lease lapses). An ``admit`` first waits
for this process's releases in flight, so that a release is seen by the next admission here
as it is in memory; other replicas see it a round trip later.

Any Redis failure (refused, timed out, an error reply) raises ``StateStoreUnavailable``; the
URL, which may hold a password, is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid

from redis.asyncio import Redis

from rag_service.adapters.redis_connection import RedisError, as_text, redis_client, unavailable
from rag_service.cancellation import cancel_until_done
from rag_service.domain import KeyLimitStats
from rag_service.errors import StateStoreUnavailable
from rag_service.ports import Clock, Refusals, StreamSlot, limits_by_key
from rag_service.settings import KeyLimitSettings, RedisSettings

logger = logging.getLogger(__name__)

# A bucket is kept this long after it would be full again: a key that pauses briefly is not
# re-created, and an injected test clock cannot race the key's expiry in real time.
BUCKET_IDLE_MARGIN_MS = 60_000

# ARGV[1] is the injected clock's reading, or empty: Redis's own time.
_NOW = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

# KEYS: bucket, streams. ARGV: now, streams, requests_per_s, burst, lease_s, slot id, margin ms.
# Returns {'admitted', ''}, {'streams', ''} or {'rate', tokens} (strings: Redis would truncate
# a Lua number to an integer).
ADMIT_SCRIPT = (
    _NOW
    + """
local streams, rate, burst = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local lease_s = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
-- The stream limit first: a refusal spends no token.
if redis.call('ZCARD', KEYS[2]) >= streams then
  return {'streams', ''}
end
local tokens = burst
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
if bucket[1] then
  local refill = math.max(0, now - tonumber(bucket[2])) * rate
  tokens = math.min(burst, tonumber(bucket[1]) + refill)
end
if tokens < 1 then
  return {'rate', tostring(tokens)}
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + tonumber(ARGV[7]))
redis.call('ZADD', KEYS[2], now + lease_s, ARGV[6])
redis.call('PEXPIRE', KEYS[2], math.ceil(lease_s * 1000))
return {'admitted', ''}
"""
)

# KEYS: streams. ARGV: now, lease_s, slot ids... A lapsed slot is added back: its stream runs.
RENEW_SCRIPT = (
    _NOW
    + """
local lease_s = tonumber(ARGV[2])
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], now + lease_s, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], math.ceil(lease_s * 1000))
return #ARGV - 2
"""
)


class _RedisSlot:
    __slots__ = ("_key_id", "_limiter", "_slot_id")

    def __init__(self, limiter: RedisKeyLimiter, key_id: str, slot_id: str) -> None:
        self._limiter: RedisKeyLimiter | None = limiter
        self._key_id = key_id
        self._slot_id = slot_id

    def release(self) -> None:
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter.release_slot(self._key_id, self._slot_id)


class RedisKeyLimiter:
    """``KeyLimiter`` over Redis. ``clock``: None for Redis's time (production), or seconds
    from a test clock; ``rng``: the ``Retry-After`` jitter. Call ``aclose`` at shutdown."""

    def __init__(
        self,
        client: Redis,
        settings: KeyLimitSettings,
        *,
        key_prefix: str = "rag:",
        lease_s: float = 30.0,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        owns_client: bool = True,
    ) -> None:
        self._client = client
        # False for a client shared with other adapters (the app's): its owner closes it last.
        self._owns_client = owns_client
        self._default, self._overrides = limits_by_key(settings)
        self._prefix = key_prefix
        self._lease_s = lease_s
        self._clock = clock
        self._admit = client.register_script(ADMIT_SCRIPT)
        self._renew = client.register_script(RENEW_SCRIPT)
        # Slots are named by this instance and a counter: unique across replicas, and a lapsed
        # slot in Redis says which process held it.
        self._holder = uuid.uuid4().hex[:12]
        self._issued = 0
        self._held: dict[str, set[str]] = {}  # key id -> slot ids this instance renews
        self._releasing: set[asyncio.Task[None]] = set()
        self._renewer: asyncio.Task[None] | None = None
        self._refusals = Refusals(rng or random.Random())  # jittering their Retry-After

    @classmethod
    def from_settings(
        cls,
        limits: KeyLimitSettings,
        redis: RedisSettings,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> RedisKeyLimiter:
        """A limiter with a client of its own (``redis_client``), closed by ``aclose``."""
        return cls(
            redis_client(redis),
            limits,
            key_prefix=redis.key_prefix,
            lease_s=redis.slot_lease_s,
            clock=clock,
            rng=rng,
        )

    async def admit(self, key_id: str) -> StreamSlot:
        if self._releasing:
            await asyncio.wait(set(self._releasing))
        limits = self._overrides.get(key_id, self._default)
        self._issued += 1
        slot_id = f"{self._holder}-{self._issued}"
        try:
            status, tokens = await self._admit(
                keys=[self._key(key_id, "bucket"), self._key(key_id, "streams")],
                args=[
                    self._now(),
                    limits.streams,
                    repr(limits.requests_per_s),
                    limits.burst,
                    repr(self._lease_s),
                    slot_id,
                    BUCKET_IDLE_MARGIN_MS,
                ],
            )
        except RedisError as error:
            raise unavailable(error) from error
        # (An admission cancelled while the script runs may leave a slot that nobody renews:
        # it lapses with its first lease.)
        status, tokens = as_text(status), as_text(tokens)
        if status == "streams":
            raise self._refusals.at_stream_limit(key_id, limits, self._local_now())
        if status == "rate":
            wait_s = (1.0 - float(tokens)) / limits.requests_per_s
            raise self._refusals.out_of_requests(key_id, limits, wait_s, self._local_now())
        self._held.setdefault(key_id, set()).add(slot_id)
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_forever(), name="key-slot-leases")
        return _RedisSlot(self, key_id, slot_id)

    def stats(self) -> KeyLimitStats:
        return KeyLimitStats(
            refused_streams=self._refusals.streams,
            refused_rate=self._refusals.rate,
            keys_tracked=None,  # in Redis, shared; expiring there on their own
        )

    def held_slots(self) -> int:
        """Slots this instance holds (and renews)."""
        return sum(len(slots) for slots in self._held.values())

    def release_slot(self, key_id: str, slot_id: str) -> None:
        """``StreamSlot.release``: stop renewing now; remove in the background."""
        held = self._held.get(key_id)
        if held is None or slot_id not in held:
            return
        held.discard(slot_id)
        if not held:
            del self._held[key_id]
        try:
            task = asyncio.get_running_loop().create_task(self._remove(key_id, slot_id))
        except RuntimeError:  # no loop (shutdown): the lease lapses on its own
            return
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def renew_leases(self) -> None:
        """Extend the lease of every slot held here (what the background renewal runs)."""
        held = {key_id: sorted(slots) for key_id, slots in self._held.items() if slots}
        if not held:
            return
        now = self._now()
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key_id, slots in held.items():
                    await self._renew(
                        keys=[self._key(key_id, "streams")],
                        args=[now, repr(self._lease_s), *slots],
                        client=pipe,
                    )
                await pipe.execute()
        except RedisError as error:
            raise unavailable(error) from error

    async def aclose(self) -> None:
        """Stop renewing, let releases in flight finish, close the client if it is this
        limiter's own (``owns_client``). Slots still held are left to lapse (a process stopping
        ends its generations, which release them)."""
        if self._renewer is not None:
            # Again and again: a renewal that took its cancellation while sending its pipeline
            # would renew on (rag_service.cancellation), and shutdown wait for it forever.
            renewer = self._renewer
            await cancel_until_done(lambda: (renewer,))
            self._renewer = None
        if self._releasing:
            await asyncio.wait(set(self._releasing))
        if self._owns_client:
            await self._client.aclose()

    async def _renew_forever(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._lease_s / 3)
            try:
                await self.renew_leases()
            except StateStoreUnavailable as error:
                if not failing:  # once per outage, not once per renewal
                    logger.warning("stream slot leases not renewed: %s", error.message)
                failing = True
            except Exception:
                # Whatever it was, the renewal must go on: without it, the running streams'
                # slots lapse and their keys get more streams than their limit.
                logger.exception("renewing stream slot leases failed")
            else:
                failing = False

    async def _remove(self, key_id: str, slot_id: str) -> None:
        try:
            await self._client.zrem(self._key(key_id, "streams"), slot_id)
        except RedisError as error:
            logger.debug("slot %s not removed (its lease lapses instead): %r", slot_id, error)

    def _key(self, key_id: str, part: str) -> str:
        return f"{self._prefix}limits:{{{key_id}}}:{part}"

    def _now(self) -> str:
        return "" if self._clock is None else repr(self._clock())

    def _local_now(self) -> float:
        """This process's time, for spacing its refusal log lines: the injected clock's if any."""
        return time.monotonic() if self._clock is None else self._clock()
