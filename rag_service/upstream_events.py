"""Typed items that an upstream chat stream yields, and the request it takes.

A stream yields any number of ``TextDelta``, ``RetryNotice`` and ``Resumed`` items and ends with
exactly one terminal item: ``Completed`` or ``Failed``. Concatenating the ``TextDelta`` texts gives
the answer exactly once, across upstream failures and retries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from rag_service.errors import RagServiceError

Role = Literal["system", "user", "assistant"]


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
class Failed:
    error: RagServiceError
    attempts: int


UpstreamEvent = TextDelta | RetryNotice | Resumed | Completed | Failed

# Takes each item of an answer as it arrives. Called synchronously, possibly from inside a
# transport's data callback: it must neither block nor raise.
EventSink = Callable[[UpstreamEvent], None]
