"""The streams of a single process: the ``SharedStreams`` implementation used without
``RAG_REDIS__URL``.

It shares nothing and finds nothing, so a stream unknown to this process is unknown, as with one
replica. The port (``rag_service.ports.SharedStreams``) says what a shared store does;
``RedisStreamStore`` (``rag_service.adapters.redis_stream_store``) is the one of a fleet.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from rag_service.domain import ChatRequest, SessionEvent, SharedStreamStats, StreamRecord
from rag_service.ports import SharedSession, StreamOwner

SessionT = TypeVar("SessionT", bound=SharedSession)


class InProcessStreams:
    """``SharedStreams`` of a single process: nothing is shared, nothing else is found."""

    degraded = False
    replica_id = "local"

    def share(self, session: SessionT, owner: StreamOwner[SessionT], request: ChatRequest) -> None:
        return None

    def share_taken_over(self, session: SessionT, owner: StreamOwner[SessionT]) -> None:
        return None

    async def take_over(self, stream_id: str, replica: str, last_seq: int) -> ChatRequest | None:
        return None

    async def record(self, stream_id: str) -> StreamRecord | None:
        return None

    async def read(
        self, stream_id: str, after_seq: int, *, max_events: int, wait_s: float
    ) -> Sequence[SessionEvent]:
        return ()

    async def request_cancel(self, stream_id: str) -> None:
        return None

    async def watch(self, stream_id: str) -> None:
        return None

    def stats(self) -> SharedStreamStats:
        return SharedStreamStats()

    async def aclose(self) -> None:
        return None
