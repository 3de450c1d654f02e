"""An idle OpenAI follower (``follow_session``) must not pile up pending futures on its session."""

from __future__ import annotations

from rag_service.api.openai_stream import follow_session
from rag_service.streaming.session import StreamSession

IDLE_WAITS = 30


async def test_an_idle_follower_does_not_pile_up_pending_waiters() -> None:
    session = StreamSession(
        stream_id="s",
        context_id="c",
        principal=None,
        buffer_capacity=100,
        clock=lambda: 0.0,
        started_at=0.0,
    )
    session.readers = 1
    session.publish_meta({"stream_id": "s"})
    batches = follow_session(session, idle_after_s=0.001)

    assert len(await batches.__anext__()) == 1  # the meta event
    for _ in range(IDLE_WAITS):
        assert await batches.__anext__() == []  # idle: time for a keep-alive
    await batches.aclose()

    held = session._waiters or []
    assert sum(not waiter.done() for waiter in held) <= session.readers
