"""One upstream's circuit breaker state shared by the replicas (fleet mode, issue #14).

Each replica keeps its own ``CircuitBreaker`` as the fast path (no shared-state call per
request). ``BreakerSharing`` adds what the others need to know:

- a local transition to open (a failure streak, a failed probe) is posted to the ``BreakerBoard`` (a port)
  with its remaining open time; a local close (a probe that succeeded) is posted too;
- what other replicas post is adopted at once (``adopt_open`` / ``adopt_closed``), so their open
  circuit parks this replica's requests (``CircuitOpen`` with a jittered ``retry_after``, or a
  parked retry) instead of letting them storm a failing upstream; the board is also read at start
  and every ``sync_interval_s``, for what was posted while this replica was not listening;
- in half-open, one replica probes for all: the probe is claimed on the board (a short lock with
  expiry, ``probe_lock_s``); the others wait for its verdict, at most that long.

While the board fails (Redis down), each replica's breaker works alone, as with one replica:
``degraded`` is true and ``fallbacks`` counts the board operations that failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

from rag_service.cancellation import cancel_until_done
from rag_service.domain import BreakerNews, BreakerState
from rag_service.errors import StateStoreUnavailable
from rag_service.ports import BreakerBoard
from rag_service.upstream.breaker import CircuitBreaker, Permit

logger = logging.getLogger(__name__)


class ProbeGate(Protocol):
    """Asked before a half-open probe is sent: may this replica send it?"""

    async def claim_probe(self, permit: Permit) -> bool: ...


def upstream_key(base_url: str) -> str:
    """The board's name of an upstream: a hash of its base URL (which may hold credentials)."""
    return hashlib.sha256(base_url.encode()).hexdigest()[:16]


class BreakerSharing:
    """Shares ``breaker`` (of the upstream at ``base_url``) through ``board``; the client asks
    it before using a half-open probe (``claim_probe``)."""

    def __init__(
        self,
        breaker: CircuitBreaker,
        board: BreakerBoard,
        *,
        base_url: str,
        replica_id: str,
        probe_lock_s: float,
        sync_interval_s: float,
        retry_interval_s: float,
    ) -> None:
        self._breaker = breaker
        self._board = board
        self._upstream = upstream_key(base_url)
        self._replica_id = replica_id
        self._probe_lock_s = probe_lock_s
        self._sync_interval_s = sync_interval_s
        self._retry_interval_s = retry_interval_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._listening = asyncio.Event()
        self._down = False
        self.fallbacks = 0  # board operations that failed (the breaker went on alone)
        self.adopted = 0  # states taken from other replicas
        breaker.subscribe(self._transitioned)

    @property
    def degraded(self) -> bool:
        return self._down

    async def start(self) -> None:
        """Adopt an open state already posted, then listen (until ``aclose``)."""
        await self._sync()
        self._spawn(self._listen_forever(), "breaker-news")
        self._spawn(self._sync_forever(), "breaker-sync")
        with contextlib.suppress(TimeoutError):  # a board that is down: retried in background
            async with asyncio.timeout(max(1.0, self._retry_interval_s)):
                await self._listening.wait()

    async def claim_probe(self, permit: Permit) -> bool:
        """Whether this replica may send its half-open probe ``permit``: True when it claimed
        the probe (or the board is down: each replica probes alone); else the breaker waits for
        the other replica's verdict."""
        try:
            claimed = await self._board.claim_probe(
                self._upstream, self._replica_id, self._probe_lock_s
            )
        except StateStoreUnavailable as error:
            self._failed(error)
            return True
        self._answered()
        if not claimed:
            self._breaker.probe_elsewhere(permit, self._probe_lock_s)
        return claimed

    async def aclose(self) -> None:
        # Again and again: a sync that took its cancellation while sending a command would
        # loop on (rag_service.cancellation), and shutdown wait for it forever.
        await cancel_until_done(lambda: self._tasks)

    def _transitioned(self, state: BreakerState) -> None:
        if self._breaker.adopting or state is BreakerState.half_open:
            return  # half-open follows from the reopen time every replica knows
        news = BreakerNews(
            upstream=self._upstream,
            state=state,
            origin=self._replica_id,
            remaining_s=self._breaker.open_remaining_s(),
            open_for_s=self._breaker.open_for_s,
        )
        self._spawn(self._post(news), "breaker-post")

    async def _post(self, news: BreakerNews) -> None:
        try:
            await self._board.post(news)
        except StateStoreUnavailable as error:
            self._failed(error)
        else:
            self._answered()

    def _adopt(self, news: BreakerNews) -> None:
        if news.upstream != self._upstream or news.origin == self._replica_id:
            return
        if news.state is BreakerState.open:
            adopted = self._breaker.adopt_open(news.remaining_s, news.open_for_s)
        else:
            adopted = self._breaker.adopt_closed()
        if adopted:
            self.adopted += 1
            logger.info("upstream circuit %s, as replica %s reports", news.state, news.origin)

    async def _sync(self) -> None:
        try:
            news = await self._board.read(self._upstream)
        except StateStoreUnavailable as error:
            self._failed(error)
            return
        self._answered()
        if news is not None:
            self._adopt(news)

    async def _sync_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sync_interval_s)
            await self._sync()

    async def _listen_forever(self) -> None:
        while True:
            try:
                await self._board.listen(self._adopt, self._listening_now)
            except StateStoreUnavailable as error:
                self._failed(error)
            self._listening.set()  # start() need not wait for a board that is down
            await asyncio.sleep(self._retry_interval_s)

    def _listening_now(self) -> None:
        self._listening.set()
        self._answered()

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _failed(self, error: StateStoreUnavailable) -> None:
        self.fallbacks += 1
        if not self._down:
            self._down = True
            logger.warning(
                "the upstream breaker is not shared (%s): this replica's breaker goes on alone",
                error.message,
            )

    def _answered(self) -> None:
        if self._down:
            self._down = False
            logger.warning("the upstream breaker is shared again (the state store answers)")
