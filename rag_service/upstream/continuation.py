"""Continuing an answer whose upstream stream broke after some text was already delivered.

- ``replay``: send the identical request again. With temperature 0 and a fixed seed the upstream
  produces the same text; :class:`TextAligner` checks the new stream against what was delivered
  and passes on only what comes after it. Costs the regenerated prefix's tokens and time; any
  divergence ends the answer with ``ContinuationMismatch`` (delivered text stays delivered).
- ``prefix``: send the delivered text as a final assistant message the model continues
  (DeepSeek's ``"prefix": true``, or vLLM's ``continue_final_message``); cheap and needs no
  determinism, but only some upstreams support it.
- ``none``: do not continue; the answer fails, its partial text kept.
"""

from __future__ import annotations

from typing import Any

from rag_service.domain import ChatRequest
from rag_service.errors import ContinuationMismatch
from rag_service.settings import ContinuationStrategy, UpstreamSettings


def build_body(settings: UpstreamSettings, request: ChatRequest, delivered: str) -> dict[str, Any]:
    """The JSON body of one attempt; ``delivered`` is the text the consumer already has."""
    messages: list[dict[str, Any]] = [
        {"role": message.role, "content": message.content} for message in request.messages
    ]
    body: dict[str, Any] = {"model": settings.model, **settings.params, **request.params}
    body["stream"] = True
    body.setdefault("stream_options", {"include_usage": True})
    if body["stream_options"] is None:  # params {"stream_options": null}: for servers rejecting it
        del body["stream_options"]
    if delivered and settings.continuation is ContinuationStrategy.prefix:
        if settings.prefix_style == "vllm":
            messages.append({"role": "assistant", "content": delivered})
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        else:
            messages.append({"role": "assistant", "content": delivered, "prefix": True})
    body["messages"] = messages
    return body


class TextAligner:
    """Lines up one attempt's text with what was delivered before it.

    With ``verify`` (replay), incoming text must first reproduce ``delivered`` exactly; only text
    beyond it is returned. Without it (prefix strategy, or nothing delivered yet), all incoming
    text is new.
    """

    def __init__(self, delivered: str, *, verify: bool) -> None:
        self._expected = delivered if verify else ""
        self._matched = 0

    @property
    def caught_up(self) -> bool:
        return self._matched == len(self._expected)

    def accept(self, text: str) -> str:
        """The part of ``text`` not delivered before; raises ``ContinuationMismatch``."""
        if self.caught_up:
            return text
        expected = self._expected[self._matched : self._matched + len(text)]
        if text[: len(expected)] != expected:
            raise ContinuationMismatch(
                "the replayed answer differs from the text already delivered "
                f"(after {self._matched + _common_prefix(text, expected)} characters)",
                details={"delivered_chars": len(self._expected)},
            )
        self._matched += len(expected)
        return text[len(expected) :]

    def finish(self) -> None:
        """The attempt ended normally: it must have reproduced everything delivered."""
        if not self.caught_up:
            raise ContinuationMismatch(
                f"the replayed answer ended after {self._matched} characters, before the "
                f"{len(self._expected)} already delivered",
                details={"delivered_chars": len(self._expected)},
            )


def _common_prefix(left: str, right: str) -> int:
    length = 0
    for a, b in zip(left, right, strict=False):
        if a != b:
            break
        length += 1
    return length
