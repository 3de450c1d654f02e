"""The small-model benchmark: its questions are sound and its measures count what they say.

The run itself needs the bundled model server and the embedding model (minutes on 2 cores), so
it is not run here; what decides its figures is: every check string is stated by the policy the
question is about, and the report's measures (right, repeated block, cut mid-word).
"""

from __future__ import annotations

import pytest

from bench.__main__ import BENCHMARKS
from bench.repo_paths import SAMPLE_CATALOG
from bench.small_model_eval import (
    QUESTIONS,
    REPEATED_BLOCK_CHARS,
    Answer,
    Question,
    has_repeated_block,
    is_right,
    render_markdown,
    summarise,
    variants,
)
from rag_service.settings import RetrievalSettings, Settings


def test_registered_for_scripts_bench() -> None:
    assert BENCHMARKS["small_model"] == "bench.small_model_eval"


@pytest.mark.parametrize("question", QUESTIONS, ids=lambda q: q.source)
def test_each_fact_is_stated_by_its_policy(question: Question) -> None:
    policy = (SAMPLE_CATALOG / question.source).read_text(encoding="utf-8")
    assert any(check in policy for check in question.checks), question.text
    assert not is_right(question.text, question)  # the question does not give it away


def test_the_variants_compare_the_old_budget_with_the_default() -> None:
    budgets = [v.context_chars for v in variants()]
    assert budgets[0] == 6000
    assert set(budgets[1:]) == {RetrievalSettings().context_char_budget}
    stops = [v.stop_repetition for v in variants()]
    assert stops == [False, False, True, False, True, False, True]
    assert {v.penalty_window for v in variants()[:5]} == {None}  # the server as it ships
    defaults = variants()[2]
    assert defaults.params == Settings().upstream.params  # what the service sends
    assert "frequency_penalty" in variants()[3].params


def test_a_repeated_block_is_a_run_seen_twice() -> None:
    block = "".join(chr(65 + i % 26) for i in range(REPEATED_BLOCK_CHARS))
    assert has_repeated_block(block + " and " + block, REPEATED_BLOCK_CHARS)
    assert not has_repeated_block(block + " and " + block[1:], REPEATED_BLOCK_CHARS)
    assert has_repeated_block(
        "ab" * REPEATED_BLOCK_CHARS, REPEATED_BLOCK_CHARS
    )  # a short loop overlaps itself


def test_summary_counts_and_renders() -> None:
    question = QUESTIONS[0]
    looped = "You have 30 days to return. " * 8 + "You ha"
    answers = [
        Answer("old prompt", question.text, looped, "length", 4.0, is_right(looped, question)),
        Answer("old prompt", question.text, "Within 14 days.", "stop", 1.0, False),
    ]

    (row,) = summarise(answers, ["old prompt"], {"old prompt": "6,000 chars"})

    assert (row["right"], row["repeated_block"], row["cut_by_length"]) == (1, 1, 1)
    assert (row["cut_mid_word"], row["stopped_repetition"], row["mean_s"]) == (1, 0, 2.5)
    table = render_markdown([row], 2)
    assert "| old prompt | 6,000 chars | 1/2 | 1 | 0 | 1 (1) |" in table
