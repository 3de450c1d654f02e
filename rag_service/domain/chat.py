"""A chat answer in domain terms: the request the upstream model takes and the items it yields.

A stream yields any number of ``TextDelta``, ``RetryNotice`` and ``Resumed`` items and ends with
exactly one terminal item: ``Completed`` or ``Failed``. Concatenating the ``TextDelta`` texts gives
the answer exactly once, across upstream failures and retries.

``Failed`` carries the exception that ended the answer. The domain imports nothing of the project
(not even the error tree, ``rag_service.errors``), so ``Failed`` is generic in its error, and the
``ChatUpstream`` port fixes it: ``rag_service.ports`` defines ``UpstreamEvent`` (the union of the
items, with ``Failed[RagServiceError]``) and ``EventSink`` (the callback that takes them) next to
the Protocol they type. Everything else here is a plain value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

Role = Literal["system", "user", "assistant"]

# Covariant: a Failed[UpstreamRejected] is a Failed[RagServiceError] (the item is frozen).
ErrorT = TypeVar("ErrorT", bound=Exception, covariant=True)


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[ChatMessage, ...]
    # Request-body overrides on top of the configured params (max_tokens, temperature, seed, ...)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class RetryNotice:
    attempt: int  # the attempt about to be made (2 = first retry)
    max_attempts: int
    delay_s: float
    reason: str


@dataclass(frozen=True)
class Resumed:
    attempt: int
    strategy: str


@dataclass(frozen=True)
class Timings:
    ttft_ms: float | None
    total_ms: float


@dataclass(frozen=True)
class Completed:
    finish_reason: str | None
    usage: dict[str, Any] | None
    timings: Timings
    attempts: int


@dataclass(frozen=True)
class Failed(Generic[ErrorT]):
    error: ErrorT
    attempts: int
