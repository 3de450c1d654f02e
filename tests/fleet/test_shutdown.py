"""Fleet mode's shutdown ends, however its Redis round trips fall: the app's lifespan is stopped
while its background tasks talk to Redis (real ``redis-server`` and ``chroma run``, in-process).

On Python 3.11, redis-py sends each command under ``asyncio.wait_for``, which loses a
cancellation that lands as the command is sent; a background loop cancelled once at that moment
ran on, and the shutdown waited for it forever (a worker stuck at "Waiting for application
shutdown."). With a breaker open period of a millisecond, the shared breaker's sync loop
(``sync_interval_s`` is the open period) is nearly always in a Redis round trip, so a few stops
are enough to hit that moment (before the fix, the first or second stop hung)."""

from __future__ import annotations

import asyncio

from rag_service.app import Components, create_app
from tests.fakes.retrieval import HashingEmbedder
from tests.fleet.replicas import CONDITION_TIMEOUT_S, SharedSettings, ingest_initial_catalog

STOPS = 20
BUSY_BREAKER = {"breaker": {"open_s": 0.001}}  # the breaker's sync loop: a round trip a ms


async def test_shutdown_ends_while_background_tasks_talk_to_redis(
    shared_settings: SharedSettings,
) -> None:
    settings = shared_settings(upstream=BUSY_BREAKER)
    embedder = HashingEmbedder(64)
    ingest_initial_catalog(settings, embedder)
    for stop in range(STOPS):
        app = create_app(settings, Components(embedder=embedder))
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        stopping = asyncio.create_task(lifespan.__aexit__(None, None, None))
        # Generous: a stop takes well under a second; only a shutdown that hangs reaches it.
        done, _ = await asyncio.wait({stopping}, timeout=CONDITION_TIMEOUT_S)
        if not done:
            waiting = [repr(task) for task in asyncio.all_tasks() if task is not stopping]
            stopping.cancel()
            raise AssertionError(f"stop {stop + 1} did not end; tasks left: {waiting}")
        assert stopping.result() is False  # the lifespan ended without an error
