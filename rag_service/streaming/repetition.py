"""Stopping an answer that has started to repeat itself verbatim.

Small models fall into loops: with the bundled SmolLM2-135M a demo answer repeated one paragraph
four times and then ran into ``max_tokens`` mid-word. Sampling penalties are upstream-specific
(llama.cpp counts only the last 64 tokens, and ``frequency_penalty`` made the bundled model loop
more: docs/benchmarks.md) and cannot be relied on, so this is the model-agnostic safety net: it
watches the answer's text as it streams, and when the text starts to copy an earlier block of
``min_chars`` characters or more, the answer ends there.

``RepeatedBlockDetector`` decides, per delta, how much of the text is safe to pass on. Text that
copies earlier text is held back while the copy is shorter than ``min_chars``: once it diverges
it is released (an ordinary repeated phrase, slightly delayed); once it reaches ``min_chars`` it
is a repeated block and is dropped. Cost: one ``str.find`` over the recent text per delta.

``RepetitionGuard`` is an ``EventSink`` between the upstream and the stream session: it forwards
items, passes text through the detector, and at a repeated block ends the answer with
``Completed(finish_reason="repetition")`` and asks its owner to stop the upstream. Concatenated,
the deltas it forwards are the upstream's text up to the repeated block, exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rag_service.domain import ChatRequest, Completed, Failed, RetryNotice, TextDelta, Timings
from rag_service.ports import ChatUpstream, EventSink, UpstreamEvent

REPETITION = "repetition"  # the ``finish_reason`` of an answer stopped here
# Copies are looked for this far back only: loops repeat their recent text, and a bounded
# search keeps the cost per delta flat however long the answer grows.
DEFAULT_WINDOW_CHARS = 4000
# A copy is held from this length on; shorter copies (" the return") are everywhere in ordinary
# text, and at most this many characters less one of a repeated block reach the client. A held
# delta waits for the next one: measured on answer-sized stretches of the policies and FAQ,
# 8.5 % of word deltas were held at 10 characters (3.3 % at 16, 1.9 % at 24, which would let
# more of a repeated block through).
DEFAULT_HOLD_CHARS = 10


class RepeatedBlockDetector:
    """Finds the point where a text starts to copy ``min_chars`` or more of its earlier text.

    Per delta, the last ``hold_chars`` characters are looked up in the text before them (one
    ``str.find`` over the recent text). No match: the delta goes out whole, as it came. A match:
    from then on the deltas of that tail are held while it keeps matching (one ``str.find`` per
    delta). A held copy that diverges goes out in the deltas it came in (an ordinary repeated
    phrase, slightly delayed); one that reaches ``min_chars`` is a repeated block and is dropped,
    from where the copy starts (a binary search for the longest tail that occurs earlier: a tail's
    own tails match too). At most ``hold_chars - 1`` characters of a copy can go out before it is
    held (they went out while the copy was still too short to tell from an ordinary phrase). Deltas
    are passed on as they came, never split or merged, except the last one at a repeated block; the
    first text of an answer is never delayed.
    """

    __slots__ = (
        "_base",
        "_copy_from",
        "_emitted",
        "_hold",
        "_min_chars",
        "_pending",
        "_text",
        "_window",
        "repeated",
    )

    def __init__(
        self,
        min_chars: int,
        *,
        hold_chars: int = DEFAULT_HOLD_CHARS,
        window_chars: int = DEFAULT_WINDOW_CHARS,
    ) -> None:
        if min_chars < 1:
            raise ValueError("min_chars must be at least 1")
        self._min_chars = min_chars
        self._hold = max(1, min(hold_chars, min_chars))
        self._window = max(window_chars, 2 * min_chars)
        self._text = ""  # the recent text; _base is the answer position of its first char
        self._base = 0
        self._emitted = 0  # answer positions before this were passed on
        self._pending: list[str] = []  # the deltas received and not passed on, in order
        self._copy_from: int | None = None  # where the held copy of earlier text starts
        self.repeated = False

    def feed(self, piece: str) -> list[str]:
        """The deltas that are safe to pass on now: earlier held ones and ``piece``, whole and
        in order, or none while ``piece`` is held. At a repeated block, the deltas before the
        copy, the last one cut where the copy (or the word it begins in) starts; nothing more
        is ever passed on after that (``repeated``).
        """
        if self.repeated or not piece:
            return []
        self._text += piece
        self._pending.append(piece)
        end = self._base + len(self._text)
        copy_from = self._copy_from
        if copy_from is not None and not self._occurs_earlier(copy_from):
            copy_from = None  # the copy diverged
        if copy_from is None and self._occurs_earlier(end - self._hold):
            # The copy starts here, or earlier in this delta (the deltas before were passed
            # on already); where exactly it starts is looked for at a repeated block only.
            copy_from = end - self._hold
            if len(piece) > self._hold:
                copy_from = self._longest_matching_tail(copy_from, above=end - len(piece) - 1)
        self._copy_from = copy_from
        if copy_from is None:
            out = self._release(end)
        elif end - copy_from >= self._min_chars:
            self.repeated = True
            start = self._longest_matching_tail(copy_from)
            out = self._release(max(self._emitted, self._word_start(start)), cut=True)
            self._pending.clear()
        else:
            out = self._release(copy_from)  # the deltas before the copy; the rest is held
        self._forget_old()
        return out

    def flush(self) -> list[str]:
        """The held deltas, at the answer's normal end: a copy too short to be a block."""
        if self.repeated:
            return []
        out = self._release(self._base + len(self._text))
        self._copy_from = None
        return out

    def _release(self, safe_end: int, *, cut: bool = False) -> list[str]:
        """The held deltas that end by ``safe_end``; with ``cut``, the one it falls in too, cut
        there. A delta is never split otherwise, so ordinary text keeps its deltas as they came."""
        out: list[str] = []
        position = self._emitted
        pending = self._pending
        while pending:
            piece = pending[0]
            if position + len(piece) > safe_end:
                if cut and safe_end > position:
                    out.append(piece[: safe_end - position])
                    position = safe_end
                break
            out.append(pending.pop(0))
            position += len(piece)
        self._emitted = position
        return out

    def _longest_matching_tail(self, matching: int, *, above: int | None = None) -> int:
        """The start of the longest tail that occurs earlier (the one from ``matching`` does),
        or of the longest that starts after ``above``."""
        low = self._base - 1 if above is None else max(above, self._base - 1)
        high = matching  # the tail from ``low`` is not looked for
        while high - low > 1:
            middle = (low + high) // 2
            if self._occurs_earlier(middle):
                high = middle
            else:
                low = middle
        return high

    def _word_start(self, position: int) -> int:
        """``position``, or the start of the word it falls inside: a copy may begin mid-word
        ("deb|it card" copied as "cred|it card"), and an answer should not end on "cred"."""
        text, base = self._text, self._base
        if not (base < position < base + len(text)) or text[position - base].isspace():
            return position
        while position > base and not text[position - base - 1].isspace():
            position -= 1
        return position

    def _occurs_earlier(self, start: int) -> bool:
        """Does the text from ``start`` to its end occur starting before ``start``?"""
        local = start - self._base
        text = self._text
        if local < 0 or local >= len(text):
            return False  # longer than what is kept, or empty: not looked for
        # An occurrence that ends before the last character starts before ``start``.
        return text.find(text[local:], 0, len(text) - 1) != -1

    def _slice(self, start: int, end: int) -> str:
        return self._text[start - self._base : end - self._base] if end > start else ""

    def _forget_old(self) -> None:
        """Keep the search window (and whatever is still held) only."""
        excess = len(self._text) - 2 * self._window
        if excess <= 0:
            return
        keep_from = min(self._base + excess, self._emitted)
        if self._copy_from is not None:
            keep_from = min(keep_from, self._copy_from)
        drop = keep_from - self._base
        if drop > 0:
            self._text = self._text[drop:]
            self._base = keep_from


class RepetitionGuard:
    """An ``EventSink`` that ends an answer at its first repeated block (see the module doc).

    ``stop_upstream`` is called once, synchronously, when the block is found: the owner cancels
    the upstream request (further items are ignored). ``clock`` (seconds) times the ``done``.
    """

    __slots__ = (
        "_attempts",
        "_clock",
        "_detector",
        "_first_text_at",
        "_sink",
        "_started_at",
        "_stop_upstream",
        "stopped",
    )

    def __init__(
        self,
        sink: EventSink,
        *,
        min_chars: int,
        stop_upstream: Callable[[], None],
        clock: Callable[[], float],
    ) -> None:
        self._sink = sink
        self._detector = RepeatedBlockDetector(min_chars)
        self._stop_upstream = stop_upstream
        self._clock = clock
        self._started_at = clock()
        self._first_text_at: float | None = None
        self._attempts = 1
        self.stopped = False

    def __call__(self, item: UpstreamEvent) -> None:
        if self.stopped:
            return
        if type(item) is TextDelta:
            if self._first_text_at is None:
                self._first_text_at = self._clock()
            for piece in self._detector.feed(item.text):
                self._sink(item if piece is item.text else TextDelta(piece))
            if self._detector.repeated:
                self._stop()
            return
        if isinstance(item, Completed | Failed):
            for piece in self._detector.flush():
                self._sink(TextDelta(piece))
        elif isinstance(item, RetryNotice):
            self._attempts = max(self._attempts, item.attempt)
        self._sink(item)

    def _stop(self) -> None:
        self.stopped = True
        now = self._clock()
        ttft = self._first_text_at
        self._sink(
            Completed(
                finish_reason=REPETITION,
                usage=None,  # the upstream reports usage at its end, which never comes
                timings=Timings(
                    ttft_ms=None if ttft is None else (ttft - self._started_at) * 1000,
                    total_ms=(now - self._started_at) * 1000,
                ),
                attempts=self._attempts,
            )
        )
        self._stop_upstream()


async def answer_without_loops(
    upstream: ChatUpstream,
    request: ChatRequest,
    min_chars: int,
    clock: Callable[[], float],
    sink: EventSink,
    delivered: str = "",
) -> None:
    """``upstream.answer(request, sink, delivered)`` through a ``RepetitionGuard`` (which sees
    only the new text: a loop across a take-over's seam is found once it repeats after it).

    At a repeated block the guard has already ended the answer (``done`` with finish_reason
    ``repetition``); the upstream request is then cancelled through a timeout rescheduled to
    now, asyncio's public way to cancel an awaited call from a callback while a cancellation
    from elsewhere (the client's stop, the grace period, shutdown) still propagates as such.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.timeout(None)
    guard = RepetitionGuard(
        sink, min_chars=min_chars, stop_upstream=lambda: stop.reschedule(loop.time()), clock=clock
    )
    try:
        async with stop:
            await upstream.answer(request, guard, delivered)
    except TimeoutError:
        if not (guard.stopped and stop.expired()):
            raise
