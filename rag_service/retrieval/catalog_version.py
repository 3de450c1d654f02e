"""The live catalog version, kept up to date by a background task, never asked on a request.

Every request needs to know whether its cached context still belongs to the live catalog. Asking
the store on the request path (even once a second) puts a store round trip, its latency and its
failures into some request's time to first token. So a background task asks the store every
``interval_s`` and requests only read the last known value (``known``), which costs nothing.

How a new version becomes known:

- an ingest through this process calls ``published(version)``: adopted at once, before the job is
  reported finished, so the next request already sees it; and announced on the ``channel``;
- an ingest by another process is adopted when its announcement arrives on the ``channel`` (with
  Redis: every replica at once, ``RedisCatalogChannel``; the CLI ingest announces too);
- else (no channel across processes, a missed announcement) it is noticed by the next background
  check, within ``interval_s`` (plus the check's own duration);
- ``wake()`` makes the background task check now instead of at the end of its interval.

A check that fails (store down) or takes longer than ``timeout_s`` keeps the last known version: a
cached context is better than none, and retrieval would fail against the same store anyway. At most
one store call runs at a time: a check that timed out leaves its worker thread running, and the
next check waits for that call instead of starting another thread on a hanging store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from rag_service.cancellation import cancel_until_done
from rag_service.errors import StateStoreUnavailable, VectorStoreUnavailable
from rag_service.ports import CatalogVersionChannel, Clock, PassageSearch
from rag_service.retrieval.catalog_channel import InProcessCatalogChannel

logger = logging.getLogger(__name__)

# (version read, publish generation when the read started)
_Reading = tuple[int, int]


class CatalogVersionWatch:
    """Remembers the live catalog version; a background task re-reads it every ``interval_s``."""

    def __init__(
        self,
        search: PassageSearch,
        *,
        clock: Clock,
        interval_s: float,
        timeout_s: float,
        on_change: Callable[[int], None] | None = None,
        channel: CatalogVersionChannel | None = None,
    ) -> None:
        self._search = search
        self._channel: CatalogVersionChannel = channel or InProcessCatalogChannel()
        self._announcing: set[asyncio.Task[None]] = set()
        # Told each new version (the first one learned too), from the event loop.
        self._on_change = on_change
        self._clock = clock
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._version: int | None = None
        self._checked_at: float | None = None
        # Bumped by ``published``: a store read that started before it may predate the publish.
        self._generation = 0
        self._probe: asyncio.Task[_Reading] | None = None
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._failing_since: int | None = None  # failure count when the current streak began
        self.checks = 0
        self.failures = 0
        self.announcements = 0  # versions adopted from another process's announcement

    @property
    def known(self) -> int | None:
        """The last known version (None: never learned). Never touches the store."""
        return self._version

    @property
    def checked_at(self) -> float | None:
        """Clock time of the last check the store answered (None: none yet)."""
        return self._checked_at

    @property
    def running(self) -> bool:
        """Whether the background task is running."""
        return self._loop_task is not None and not self._loop_task.done()

    @property
    def channel(self) -> CatalogVersionChannel:
        """Where publishes are announced and heard (its ``degraded`` is for /readyz)."""
        return self._channel

    async def start(self) -> None:
        """Learn the version now (bounded by ``timeout_s``), listen to announcements, then keep
        it up to date in the background until ``aclose``. Idempotent."""
        if self._loop_task is not None:
            return
        # Listening first: a version announced during the first read is not missed.
        await self._channel.start(self._announced, self.wake)
        await self._guarded_refresh()
        self._loop_task = asyncio.get_running_loop().create_task(
            self._run(), name="catalog-version-watch"
        )

    async def refresh(self) -> int | None:
        """Ask the store now (joining a store call already running); the version known after.

        Never raises for an unavailable or slow store: the last known version stays.
        """
        probe = self._probe
        if probe is None or probe.done():
            probe = self._probe = asyncio.get_running_loop().create_task(self._read())
            probe.add_done_callback(_consume_result)
        self.checks += 1
        try:
            version, generation = await asyncio.wait_for(
                asyncio.shield(probe), timeout=self._timeout_s
            )
        except (VectorStoreUnavailable, TimeoutError) as error:
            self._failed(error)
            return self._version
        self._recovered()
        if generation == self._generation:
            self._adopt(version, "store")
        return self._version

    def published(self, version: int) -> None:
        """This process just published ``version`` (an admin ingest): adopt it at once, and
        announce it to the other processes (in the background; from the event loop)."""
        self._generation += 1
        self._adopt(version, "ingest")
        task = asyncio.get_running_loop().create_task(self._announce(version))
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)

    def wake(self) -> None:
        """Have the background task check now rather than at the end of its interval."""
        self._wake.set()

    async def aclose(self) -> None:
        """Stop the background task (at shutdown). A store call in a worker thread is left to
        finish on its own; its result is dropped."""
        for task in (self._loop_task, self._probe, *self._announcing):
            if task is not None and not task.done():
                task.cancel()
        await self._channel.aclose()
        # Python 3.11's wait_for (in ``refresh``) can swallow a cancellation that arrives as the
        # store answers; the loop would then run on and shutdown wait for it forever. So the
        # cancel is repeated until the task has ended.
        loop_task = self._loop_task
        if loop_task is not None:
            await cancel_until_done(lambda: (loop_task,))

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s):
                    await self._wake.wait()
            self._wake.clear()
            await self._guarded_refresh()

    async def _guarded_refresh(self) -> None:
        try:
            await self.refresh()
        except Exception:  # a bug must not end the watch (or start-up): keep the last version
            self.failures += 1
            logger.exception("catalog version check crashed; keeping version %s", self._version)

    async def _announce(self, version: int) -> None:
        try:
            await self._channel.announce(version)
        except StateStoreUnavailable as error:
            logger.warning(
                "catalog version %s not announced (%s); other processes notice it at their "
                "next check",
                version,
                error.message,
            )

    def _announced(self, version: int) -> None:
        """A process (this one too) announced ``version``. Only forward: versions only grow,
        and a late announcement must not undo a newer version a check already found."""
        if self._version is not None and version <= self._version:
            return
        self.announcements += 1
        self._generation += 1  # a store read already running may predate it, as in ``published``
        self._adopt(version, "announcement")

    async def _read(self) -> _Reading:
        generation = self._generation
        version = await asyncio.to_thread(self._search.live_version)
        return version, generation

    def _adopt(self, version: int, source: str) -> None:
        self._checked_at = self._clock()
        changed = version != self._version
        if changed:
            logger.info(
                "live catalog version is now %s (was %s, from %s)", version, self._version, source
            )
        self._version = version
        if changed and self._on_change is not None and version > 0:
            self._on_change(version)

    def _failed(self, error: Exception) -> None:
        self.failures += 1
        if self._failing_since is not None:
            # Once per streak at warning level: a store that is down would log every interval.
            logger.debug("catalog version check failed again (%r)", error)
            return
        self._failing_since = self.failures - 1
        logger.warning(
            "catalog version check failed (%r); keeping version %s until the store answers",
            error,
            self._version,
        )

    def _recovered(self) -> None:
        if self._failing_since is None:
            return
        failed = self.failures - self._failing_since
        self._failing_since = None
        logger.info("catalog version check answers again after %d failed checks", failed)


def _consume_result(task: asyncio.Task[_Reading]) -> None:
    # A read whose waiter timed out may fail later, unobserved; asyncio would log it as a bug.
    if not task.cancelled():
        task.exception()
