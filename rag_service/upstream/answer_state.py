"""What one answer carries from attempt to attempt (one per open stream, so kept small), and the
error that ends it when one of its limits is reached."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rag_service.domain import ChatRequest
from rag_service.errors import (
    RagServiceError,
    RetriesExhausted,
    UpstreamError,
    UpstreamRetryable,
)
from rag_service.upstream.backoff import BackoffSchedule
from rag_service.upstream.breaker import Permit
from rag_service.upstream.chunks import CompletionChunk


@dataclass(slots=True)
class AnswerState:
    """The state of one answer across its attempts (one per open stream)."""

    request: ChatRequest
    started_at: float
    deadline: float
    schedule: BackoffSchedule | None = None  # made at the first retry: most answers have none
    # The text delivered so far, as UTF-8: a continuation needs it, and a str per token would
    # cost ~70 bytes each for the whole answer (18 KB for 256 tokens, per open stream).
    text: bytearray = field(default_factory=bytearray)
    made: int = 0  # requests sent for this answer
    charged: int = 0  # of those, the ones counted against max_attempts (failed probes are not)
    first_text_at: float | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    next_permit: Permit = Permit.normal
    failure: RagServiceError | None = None

    @property
    def delivered(self) -> str:
        return self.text.decode()

    def note(self, chunk: CompletionChunk) -> None:
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
        if chunk.usage is not None:
            self.usage = chunk.usage


def retries_exhausted(
    reason: str,
    message: str,
    last: UpstreamError | None,
    *,
    retry_after_s: float | None = None,
) -> RetriesExhausted:
    """The answer's end at a limit: ``reason`` names it, ``last`` is the last attempt's error."""
    details: dict[str, Any] = {"reason": reason}
    if isinstance(last, UpstreamRetryable):
        details["last_reason"] = last.reason
    return RetriesExhausted(message, retry_after_s=retry_after_s, details=details)
