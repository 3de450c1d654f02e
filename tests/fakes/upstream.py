"""A scriptable ``ChatUpstream``: plays given items with optional pauses, records what happened.

Script steps are upstream items (``TextDelta``, ``RetryNotice``, ``Resumed``, ``Completed``,
``Failed``) or controls:

- ``Pause(seconds)``: sleep before the next step (a slow upstream);
- ``Hold()``: wait until the test calls ``release()`` (deterministic "in the middle of an answer");
- ``Raise(error)``: raise instead of delivering the next item (an adapter that breaks its contract).

An answer asked to continue after ``delivered`` text (a take-over) behaves like a ``prefix``
continuation: the script's text minus its first ``len(delivered)`` characters, after a
``Resumed`` item. The fake counts ``ensure_available``/``answer`` calls, keeps each request, and records an answer
that was cancelled before its last step as ``closed_early`` (cancellation reached the upstream):
``closed_event`` is set then, so a test can wait for it without sleeping. ``health()`` returns
``reported_health``, which a test may set (an open breaker, a configuration problem), and
``probe()`` returns ``probe_result`` (an unreachable upstream), counting ``probe_calls``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from rag_service.domain import (
    ChatRequest,
    Completed,
    Failed,
    Resumed,
    TextDelta,
    Timings,
    UpstreamHealth,
    UpstreamProbe,
)
from rag_service.errors import RagServiceError
from rag_service.ports import EventSink, UpstreamEvent


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class Hold:
    pass


@dataclass(frozen=True)
class Raise:
    error: Exception


Step = UpstreamEvent | Pause | Hold | Raise


def completed(finish_reason: str = "stop", attempts: int = 1) -> Completed:
    return Completed(
        finish_reason=finish_reason,
        usage={"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
        timings=Timings(ttft_ms=1.0, total_ms=2.0),
        attempts=attempts,
    )


def answer_script(pieces: Sequence[str], *, pause_s: float = 0.0) -> list[Step]:
    """Deltas of ``pieces`` (each after ``pause_s``), then ``Completed``."""
    steps: list[Step] = []
    for piece in pieces:
        if pause_s:
            steps.append(Pause(pause_s))
        steps.append(TextDelta(piece))
    steps.append(completed())
    return steps


@dataclass
class ScriptedUpstream:
    script: Sequence[Step] = ()
    unavailable: RagServiceError | None = None  # raised by ensure_available (e.g. CircuitOpen)
    reported_health: UpstreamHealth = field(  # what health() returns
        default_factory=lambda: UpstreamHealth(breaker="closed")
    )
    probe_result: UpstreamProbe = field(  # what probe() returns
        default_factory=lambda: UpstreamProbe(ok=True, detail="scripted: reachable")
    )
    ensure_calls: int = 0
    probe_calls: int = 0
    answer_calls: int = 0
    requests: list[ChatRequest] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)  # per answer: text it continues after
    completed_streams: int = 0
    closed_early: int = 0
    closed_event: asyncio.Event = field(default_factory=asyncio.Event)
    holding: asyncio.Event = field(default_factory=asyncio.Event)
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    aclosed: bool = False

    def ensure_available(self) -> None:
        self.ensure_calls += 1
        if self.unavailable is not None:
            raise self.unavailable

    def health(self) -> UpstreamHealth:
        return self.reported_health

    async def probe(self) -> UpstreamProbe:
        self.probe_calls += 1
        return self.probe_result

    def release(self) -> None:
        """Let every stream waiting at a ``Hold()`` continue."""
        self._release.set()

    async def answer(self, request: ChatRequest, sink: EventSink, delivered: str = "") -> None:
        self.answer_calls += 1
        self.requests.append(request)
        self.delivered.append(delivered)
        delivered_terminal = False
        skip = len(delivered)
        try:
            for step in self.script:
                if skip and isinstance(step, TextDelta):
                    cut, skip = min(skip, len(step.text)), skip - min(skip, len(step.text))
                    if cut == len(step.text):
                        continue
                    step = TextDelta(step.text[cut:])
                if delivered and isinstance(step, TextDelta | Completed):
                    sink(Resumed(attempt=1, strategy="prefix"))
                    delivered = ""
                if isinstance(step, Pause):
                    await asyncio.sleep(step.seconds)
                elif isinstance(step, Hold):
                    self.holding.set()
                    await self._release.wait()
                elif isinstance(step, Raise):
                    raise step.error
                else:
                    if is_terminal(step):
                        delivered_terminal = True
                        self.completed_streams += 1
                    sink(step)
        except asyncio.CancelledError:
            # Cancelled before the answer's end: the consumer let go of the upstream.
            if not delivered_terminal:
                self.closed_early += 1
                self.closed_event.set()
            raise

    async def aclose(self) -> None:
        self.aclosed = True


def full_text(script: Sequence[Step]) -> str:
    return "".join(step.text for step in script if isinstance(step, TextDelta))


def is_terminal(step: Step) -> bool:
    return isinstance(step, Completed | Failed)
