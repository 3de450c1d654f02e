"""The ports of the upstream model: the streaming chat client, its metrics, and the board on
which replicas share their circuit breakers' states (fleet mode).

Besides the Protocols, it names the callback of ``ChatUpstream.answer`` (``EventSink``) and the
items it takes (``UpstreamEvent``): their failure carries a ``RagServiceError``, which the domain
does not import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from rag_service.domain import (
    BreakerNews,
    ChatRequest,
    Completed,
    Failed,
    Resumed,
    RetryNotice,
    TextDelta,
    UpstreamHealth,
    UpstreamProbe,
)
from rag_service.errors import RagServiceError

# The items of an answer (rag_service.domain.chat), its failure carrying the service's error.
UpstreamEvent = TextDelta | RetryNotice | Resumed | Completed | Failed[RagServiceError]

# Takes each item of an answer as it arrives. Called synchronously, possibly from inside a
# transport's data callback: it must neither block nor raise.
EventSink = Callable[[UpstreamEvent], None]


class ChatUpstream(Protocol):
    """An OpenAI-compatible chat model that streams its answer."""

    def ensure_available(self) -> None:
        """Raise ``CircuitOpen`` (with a jittered retry_after_s) when requests would fail fast."""
        ...

    def health(self) -> UpstreamHealth:
        """The breaker's state and the last configuration problem; cheap, never raises."""
        ...

    async def probe(self) -> UpstreamProbe:
        """One cheap real request to the upstream (``GET /models``); never raises."""
        ...

    async def answer(self, request: ChatRequest, sink: EventSink, delivered: str = "") -> None:
        """Pass each item of the answer to ``sink`` as it arrives, the last one being exactly one
        terminal item (``Completed`` or ``Failed``); return after it. ``delivered``: text of the
        answer its consumer has already (from a replica that died): continue after it.

        Pushing rather than yielding lets an implementation deliver a token straight from its
        transport's data callback, with no task wake-up per token. Cancelling the call cancels
        the answer and releases its upstream request.
        """
        ...

    async def aclose(self) -> None: ...


class UpstreamMetrics(Protocol):
    """What the upstream client reports (``PrometheusUpstreamMetrics`` in
    ``rag_service.observability``; ``NoopUpstreamMetrics`` in ``rag_service.upstream``)."""

    def on_attempt(self) -> None:
        """A request was sent upstream (first attempt, retry or probe)."""
        ...

    def on_retry(self, reason: str) -> None:
        """A retry was scheduled (or a stream parked) because of ``reason``."""
        ...

    def on_breaker_state(self, state: str) -> None: ...

    def on_budget(self, tokens_left: float) -> None: ...

    def on_ttft(self, seconds: float) -> None:
        """Time from the start of an answer to its first delivered text."""
        ...

    def on_outcome(self, outcome: str) -> None:
        """``"ok"`` or the error code an answer ended with."""
        ...


NewsListener = Callable[[BreakerNews], None]


class BreakerBoard(Protocol):
    """Where replicas post and learn breaker states. Every method raises
    ``StateStoreUnavailable`` when the board is down."""

    async def post(self, news: BreakerNews) -> None:
        """Record ``news`` (open: until its reopen time; closed: clears the open state and the
        probe claim) and tell every listener."""
        ...

    async def read(self, upstream: str) -> BreakerNews | None:
        """The open state recorded for ``upstream`` (None: none, or its period is over)."""
        ...

    async def claim_probe(self, upstream: str, holder: str, lease_s: float) -> bool:
        """Claim the one half-open probe for ``lease_s``; False when another holder has it."""
        ...

    async def listen(self, on_news: NewsListener, on_listening: Callable[[], None]) -> None:
        """Deliver every news posted until cancelled (``on_listening`` once subscribed)."""
        ...
