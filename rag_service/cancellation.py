"""Stopping background tasks at shutdown when a cancellation may be lost.

Python 3.11's ``asyncio.wait_for`` returns the inner result instead of raising when a
cancellation lands just as the inner awaitable finishes (fixed in 3.12). redis-py sends every
command under ``wait_for`` (its socket timeout), so a task cancelled as it sends a command can
carry on: a ``while True`` loop around Redis calls then runs on, and a shutdown that cancelled it
once and awaits it waits forever (seen as a worker stuck at "Waiting for application
shutdown."). ``cancel_until_done`` cancels again until every task has ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["CANCEL_RETRY_S", "cancel_until_done"]

# How long one cancellation is given before it is repeated: a task that took it ends at once.
CANCEL_RETRY_S = 0.1


async def cancel_until_done(tasks: Callable[[], Iterable[asyncio.Task[Any]]]) -> None:
    """Cancel the tasks ``tasks()`` returns, and again (``tasks()`` asked anew, so tasks started
    meanwhile are stopped too) until none is left running. Their exceptions are retrieved (a
    background task's failure was its own to log); the caller's own cancellation propagates."""
    seen: set[asyncio.Task[Any]] = set()
    while True:
        seen.update(tasks())
        running = {task for task in seen if not task.done()}
        if not running:
            break
        for task in running:
            task.cancel()
        await asyncio.wait(running, timeout=CANCEL_RETRY_S)
    for task in seen:
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not report it as never retrieved
