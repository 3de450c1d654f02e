"""RepeatedBlockDetector and RepetitionGuard without I/O: what is passed on, held, dropped."""

from __future__ import annotations

import pytest

from rag_service.domain import Completed, Failed, RetryNotice, TextDelta, Timings
from rag_service.errors import UpstreamRetryable
from rag_service.ports import UpstreamEvent
from rag_service.streaming.repetition import (
    DEFAULT_HOLD_CHARS,
    REPETITION,
    RepeatedBlockDetector,
    RepetitionGuard,
)

PARAGRAPH = (
    "You can return unused products within 30 days of delivery. Returns from Germany are free; "
    "from other EU countries we deduct 6.95 EUR for the label.\n\n"
)


def pieces(text: str, size: int = 4) -> list[str]:
    """``text`` in pieces of ``size`` characters, like tokens arriving one by one."""
    return [text[i : i + size] for i in range(0, len(text), size)]


def feed_all(detector: RepeatedBlockDetector, parts: list[str]) -> str:
    return "".join("".join(detector.feed(part)) for part in parts)


def assert_ends_at_copy(passed: str, original: str) -> None:
    """``passed`` is ``original`` and then at most the first few characters of its copy: those
    that went out before the copy was long enough to hold."""
    assert passed.startswith(original)
    leaked = passed[len(original) :]
    assert len(leaked) < DEFAULT_HOLD_CHARS
    assert original.startswith(leaked)


@pytest.mark.parametrize("size", [1, 3, 7, 40])
def test_a_repeated_paragraph_ends_before_its_copy(size: int) -> None:
    detector = RepeatedBlockDetector(60)

    passed = feed_all(detector, pieces(PARAGRAPH * 4, size))

    assert detector.repeated
    assert_ends_at_copy(passed, PARAGRAPH)
    assert detector.feed("more text") == []
    assert detector.flush() == []


def test_a_short_period_loop_is_a_repeated_block_too() -> None:
    detector = RepeatedBlockDetector(60)
    intro = "Sorry, I can only help with our shop. "

    passed = feed_all(detector, pieces(intro + "I do not know. " * 20))

    assert detector.repeated
    # The loop's first round is kept (its full stop already copies "shop. "); the rounds that
    # copy it are dropped.
    assert passed.startswith(intro + "I do not know")
    assert len(passed) < len(intro) + len("I do not know. ") + DEFAULT_HOLD_CHARS


def test_text_without_long_repeats_passes_whole_and_at_once() -> None:
    detector = RepeatedBlockDetector(60)
    answer = (
        "The Alpine 2 tent weighs 2.1 kg [source: TNT-00017]. The Alpine 3 tent weighs 2.9 kg "
        "[source: TNT-00018]. Both ship free from 75 EUR within Germany."
    )

    passed = ["".join(detector.feed(part)) for part in pieces(answer, 5)]

    assert not detector.repeated
    assert "".join(passed) + "".join(detector.flush()) == answer
    assert passed[0] == answer[:5]  # the first text is never delayed


def test_a_repeated_phrase_shorter_than_the_block_is_released_when_it_diverges() -> None:
    detector = RepeatedBlockDetector(60)
    first = "Standard delivery within Germany costs 4.95 EUR. "
    second = "Standard delivery within Germany is free from 75 EUR."

    passed = feed_all(detector, pieces(first + second, 2))

    assert not detector.repeated
    assert passed + "".join(detector.flush()) == first + second


def test_held_text_is_released_at_the_end() -> None:
    detector = RepeatedBlockDetector(60)
    answer = "Ask customer service for help. Thank you! Ask customer service"

    passed = feed_all(detector, pieces(answer, 3))

    assert not passed.endswith("Ask customer service")  # a copy in progress is held
    assert passed + "".join(detector.flush()) == answer


def test_a_block_of_exactly_min_chars_is_caught_and_a_shorter_one_is_not() -> None:
    block = "abcdefghijklmnopqrstuvwxyz0123"  # 30 distinct characters
    caught = RepeatedBlockDetector(30)
    feed_all(caught, [block, "|", block])
    assert caught.repeated

    spared = RepeatedBlockDetector(31)
    out = feed_all(spared, [block, "|", block])
    assert not spared.repeated
    assert out + "".join(spared.flush()) == block + "|" + block


def test_long_answers_keep_a_bounded_window() -> None:
    detector = RepeatedBlockDetector(60, window_chars=500)
    words = [f"item {n} costs {n * 3 % 97} EUR; " for n in range(2000)]

    passed = feed_all(detector, words)

    assert not detector.repeated
    assert passed + "".join(detector.flush()) == "".join(words)


def test_min_chars_must_be_positive() -> None:
    with pytest.raises(ValueError, match="min_chars"):
        RepeatedBlockDetector(0)


class Recorder:
    def __init__(self) -> None:
        self.items: list[UpstreamEvent] = []
        self.stops = 0

    def __call__(self, item: UpstreamEvent) -> None:
        self.items.append(item)

    def stop(self) -> None:
        self.stops += 1

    def text(self) -> str:
        return "".join(i.text for i in self.items if isinstance(i, TextDelta))


def guard_for(recorder: Recorder, min_chars: int = 60) -> RepetitionGuard:
    ticks = iter(range(1000))
    return RepetitionGuard(
        recorder, min_chars=min_chars, stop_upstream=recorder.stop, clock=lambda: next(ticks)
    )


def done(reason: str = "length") -> Completed:
    return Completed(reason, {"completion_tokens": 256}, Timings(1.0, 2.0), attempts=1)


def test_the_guard_ends_a_loop_with_done_repetition_and_stops_the_upstream_once() -> None:
    recorder = Recorder()
    guard = guard_for(recorder)
    guard(RetryNotice(attempt=2, max_attempts=5, delay_s=0.1, reason="stream_cut"))

    for part in pieces(PARAGRAPH * 3, 5):
        guard(TextDelta(part))
    guard(done())  # the upstream's own end, after the stop: ignored

    assert_ends_at_copy(recorder.text(), PARAGRAPH)
    ends = [i for i in recorder.items if isinstance(i, Completed | Failed)]
    assert len(ends) == 1
    end = ends[0]
    assert isinstance(end, Completed)
    assert end.finish_reason == REPETITION
    assert end.attempts == 2
    assert end.usage is None
    assert recorder.stops == 1
    assert guard.stopped


def test_the_guard_passes_a_normal_answer_and_its_end_unchanged() -> None:
    recorder = Recorder()
    guard = guard_for(recorder)
    answer = "Returns are free from Germany. Returns are free from Germany for 30 days."

    for part in pieces(answer, 6):
        guard(TextDelta(part))
    end = done("stop")
    guard(end)

    assert recorder.text() == answer
    assert recorder.items[-1] is end
    assert recorder.stops == 0


def test_held_text_goes_out_before_a_failure() -> None:
    recorder = Recorder()
    guard = guard_for(recorder)
    failure = Failed(UpstreamRetryable("cut", reason="stream_cut"), attempts=3)

    for part in ["Call us. ", "Thanks! ", "Call us."]:
        guard(TextDelta(part))
    guard(failure)

    assert recorder.text() == "Call us. Thanks! Call us."
    assert recorder.items[-1] is failure


def test_ordinary_deltas_go_out_as_they_came() -> None:
    detector = RepeatedBlockDetector(80)
    parts = ["one", " two", " three", " two", " one."]

    assert [detector.feed(part) for part in parts] == [[part] for part in parts]


def test_a_copy_that_starts_inside_a_delta_keeps_the_text_before_it() -> None:
    detector = RepeatedBlockDetector(40)
    block = "Returns from Germany are free of charge. "

    passed = feed_all(detector, [block, "Note: " + block[:20], block[20:], block])

    assert detector.repeated
    assert_ends_at_copy(passed, block + "Note: ")


def test_the_answer_ends_before_a_word_the_copy_begins_inside() -> None:
    detector = RepeatedBlockDetector(40)
    first = "Pay with a debit card from the EU's national currency exchange system. "
    second = "Or pay with a credit card from the EU's national currency exchange system."

    passed = feed_all(detector, [first, second])  # a burst of text in one delta

    assert detector.repeated
    # The copy is "it card from the EU's ..." (debit / credit); "cred" is not sent.
    assert passed == first + "Or pay with a "


def test_held_deltas_go_out_as_they_came_when_the_copy_diverges() -> None:
    detector = RepeatedBlockDetector(80)
    first = ["Returns ", "from ", "Germany ", "are ", "free. "]
    again = ["Returns ", "from ", "Germany ", "take ", "3 days."]

    out = [detector.feed(part) for part in first + again]

    # "from Germany " is held while it copies the first sentence (from 10 characters on), then
    # released in its deltas; "Returns " went out before the copy was long enough to tell.
    assert [piece for pieces in out for piece in pieces] == first + again
    assert out[6:9] == [[], [], ["from ", "Germany ", "take "]]
