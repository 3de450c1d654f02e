"""``cancel_until_done``: background tasks stop even when one loses a cancellation, as a loop
around redis-py commands does on Python 3.11 (its ``wait_for`` returns the command's result when
the cancellation lands as the command is sent); a single cancel then left shutdown waiting."""

from __future__ import annotations

import asyncio

from rag_service.cancellation import cancel_until_done

WAIT_LIMIT_S = 60.0  # generous: the stops take a few retries of 0.1 s; only a hang reaches it


async def loop_losing_cancellations(lost: int, started: asyncio.Event) -> None:
    """Sleeps forever, carrying on after its first ``lost`` cancellations."""
    started.set()
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if lost == 0:
                raise
            lost -= 1


async def test_a_task_that_loses_its_cancellations_is_cancelled_again_until_it_ends() -> None:
    started = asyncio.Event()
    task = asyncio.create_task(loop_losing_cancellations(2, started))
    await started.wait()
    async with asyncio.timeout(WAIT_LIMIT_S):
        await cancel_until_done(lambda: {task})
    assert task.cancelled()


async def test_tasks_started_meanwhile_are_stopped_and_failures_retrieved() -> None:
    tasks: set[asyncio.Task[None]] = set()
    sleeping = asyncio.Event()

    async def spawning_on_cancel() -> None:
        try:
            sleeping.set()
            await asyncio.sleep(3600)
        finally:  # as a breaker transition during shutdown posts its news in a new task
            tasks.add(asyncio.create_task(loop_losing_cancellations(1, asyncio.Event())))

    async def failing() -> None:
        raise ValueError("its own failure")

    failed = asyncio.create_task(failing())
    tasks.update({asyncio.create_task(spawning_on_cancel()), failed})
    async with asyncio.timeout(WAIT_LIMIT_S):
        await sleeping.wait()
        await asyncio.wait({failed})
        await cancel_until_done(lambda: tasks)
    assert len(tasks) == 3
    assert all(task.done() for task in tasks)
