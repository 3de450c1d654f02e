"""Per-stream state stays small: thousands of concurrent answers must fit in memory."""

from __future__ import annotations

import gc
import tracemalloc

from rag_service.domain import TextDelta
from rag_service.settings import StreamSettings
from rag_service.streaming import StreamRegistry, meta_payload
from tests.fakes.resolver import sample_context
from tests.fakes.upstream import completed

SESSIONS = 500
TOKENS = 256  # the default upstream max_tokens
# Budget for a session's own state (buffer, ids, bookkeeping) at the end of a 256-token answer;
# the service-wide goal is < 20 KB per stream including the connection and the upstream request.
MAX_BYTES_PER_SESSION = 8 * 1024


async def test_a_finished_256_token_answer_costs_under_8_kb() -> None:
    registry = StreamRegistry(StreamSettings(), max_sessions=SESSIONS)
    context = sample_context()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]

    for _ in range(SESSIONS):
        session = registry.open(context_id="shop:user-1", principal="key-1", started_at=0.0)
        session.publish_meta(meta_payload(session.stream_id, context))
        for index in range(TOKENS):
            session.apply(TextDelta(f" w{index % 100}"))
        session.apply(completed())
    gc.collect()
    per_session = (tracemalloc.get_traced_memory()[0] - before) / SESSIONS
    tracemalloc.stop()

    assert registry.stats().sessions == SESSIONS
    assert per_session < MAX_BYTES_PER_SESSION, f"{per_session:.0f} bytes per session"
    await registry.close()
