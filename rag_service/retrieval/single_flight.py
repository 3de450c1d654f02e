"""Single flight: concurrent callers asking for the same key share one piece of work.

The work runs in its own task, and every caller (the first one included) awaits it through
``asyncio.shield``: a caller that is cancelled (its client went away) stops waiting, but the
work goes on for everybody else and its result still lands wherever the work puts it. The key
is forgotten as soon as the work ends, so the table never grows beyond the work in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

from rag_service.errors import RagServiceError

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

logger = logging.getLogger(__name__)


class SingleFlight(Generic[K, V]):
    """At most one running piece of work per key; late callers join it."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Task[V]] = {}

    def is_running(self, key: K) -> bool:
        return key in self._running

    def __len__(self) -> int:
        return len(self._running)

    async def run(self, key: K, work: Callable[[], Coroutine[Any, Any, V]]) -> V:
        """Start ``work`` for ``key`` unless it is already running, then await its result."""
        task = self._running.get(key)
        if task is None:
            task = asyncio.create_task(work())
            self._running[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(task)

    async def aclose(self) -> None:
        """Cancel all running work (at shutdown) and wait until it has stopped."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    def _forget(self, key: K, done: asyncio.Task[V]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if done.cancelled():
            return
        # Fetching the exception marks it retrieved even when every waiter was cancelled; a
        # foreign exception is a bug and must not vanish silently.
        error = done.exception()
        if error is not None and not isinstance(error, RagServiceError):
            logger.error("single-flight work for %r failed", key, exc_info=error)
