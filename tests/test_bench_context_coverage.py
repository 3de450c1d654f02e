"""The context coverage study: its pairs are sound, its threshold search is right, and a run on a
few pairs gives well-formed tables whose labels follow from the retrieved contexts.

The run (sample catalog, shipped model, real ingest, the service's Retriever) is checked for
structure, ranges and consistency, never for timings.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.context_coverage import TOP_K, conversation_pairs, run
from bench.context_coverage_report import (
    SIGNAL_NAMES,
    PairResult,
    best_threshold,
    left_out_check,
    shares,
)
from bench.repo_paths import SAMPLE_CATALOG
from bench.retrieval_questions import ALL_KINDS, CONVERSATION_KINDS, KINDS, load_questions
from ingest.loaders import load_catalog


def test_conversation_pairs_are_labelled_with_documents_of_the_sample_catalog() -> None:
    doc_ids = {d.doc_id for d in load_catalog([SAMPLE_CATALOG], base_dir=SAMPLE_CATALOG).documents}
    pairs = conversation_pairs()

    assert {p.kind for p in pairs} == set(CONVERSATION_KINDS)
    assert sum(p.kind == "follow_up" for p in pairs) >= 20
    assert sum(p.kind == "topic_shift" for p in pairs) >= 20
    assert len({p.id for p in pairs}) == len(pairs)
    for pair in pairs:
        assert pair.first and pair.first != pair.question, pair.id
        assert set(pair.answers) <= doc_ids, pair.id
    # The retrieval benchmark scores single questions: follow-ups only on request.
    assert "follow_up" not in {q.kind for q in load_questions()}
    assert {q.kind for q in load_questions(kinds=ALL_KINDS)} == set(KINDS) | {"follow_up"}


def test_a_follow_up_without_its_first_question_is_rejected(tmp_path: Path) -> None:
    line = {"id": "f", "kind": "follow_up", "question": "and in blue?", "answers": ["X"]}
    bad = tmp_path / "questions.jsonl"
    bad.write_text(json.dumps(line | {"origin": "hand"}) + "\n", encoding="utf-8")

    with pytest.raises(ValueError, match="'first' belongs to topic_shift and follow_up only"):
        load_questions(bad, ALL_KINDS)


def _pair(pair_id: str, covered: bool, value: float, kind: str | None = None) -> PairResult:
    return PairResult(
        id=pair_id,
        kind=kind or ("follow_up" if covered else "topic_shift"),
        first="first",
        question="second",
        answers=("A",),
        context=["A", "B"] if covered else ["B"],
        fresh=["A"],
        signals={"s": value},
    )


def test_the_best_threshold_lies_in_the_middle_of_the_widest_clean_gap() -> None:
    pairs = [
        _pair("c1", True, 0.9),
        _pair("c2", True, 0.7),
        _pair("u1", False, 0.3),
        _pair("u2", False, 0.1),
    ]

    best = best_threshold(pairs, "s")

    assert best["threshold"] == 0.5
    assert best["margin"] == 0.2
    assert best["covered_kept"] == best["uncovered_refreshed"] == 1.0
    assert best["misjudged"] == []
    assert left_out_check(pairs, "s") == {"covered": 1.0, "not covered": 1.0}


def test_overlapping_pairs_are_counted_and_named() -> None:
    pairs = [
        _pair("c1", True, 0.9),
        _pair("c2", True, 0.2),  # an elliptical follow-up: low signal, still covered
        _pair("u1", False, 0.6),  # a related topic shift: high signal, not covered
        _pair("u2", False, 0.1),
        _pair("u3", False, 0.0),
    ]

    at_half = shares(pairs, "s", 0.5)
    best = best_threshold(pairs, "s")

    assert at_half["covered_kept"] == 0.5
    assert at_half["uncovered_refreshed"] == 0.667
    assert at_half["follow_ups_kept"] == 0.5
    assert at_half["topic_shifts_refreshed"] == 0.667
    assert best["threshold"] == 0.15  # keeps both covered pairs, refreshes 2 of 3 others
    assert best["balanced"] == 0.833
    assert best["misjudged"] == ["u1"]
    # Left out, c2 meets a threshold chosen above 0.6, and u1 one chosen at 0.15.
    assert left_out_check(pairs, "s") == {"covered": 0.5, "not covered": 0.667}


@pytest.mark.slow
def test_a_run_on_a_few_pairs_gives_consistent_labels_and_well_formed_tables() -> None:
    result = run(limit=2, log=lambda _: None)

    assert [p.kind for p in result.pairs] == ["topic_shift"] * 2 + ["follow_up"] * 2
    assert result.catalog["documents"] == len(
        load_catalog([SAMPLE_CATALOG], base_dir=SAMPLE_CATALOG).documents
    )
    # Stored passage vectors are the embeddings of the passages' texts.
    assert result.catalog["stored_vs_reembedded_max_abs_diff"] < 1e-4
    for pair in result.pairs:
        assert 1 <= len(pair.context) <= TOP_K
        assert pair.covered == bool(set(pair.context) & set(pair.answers))
        assert set(pair.signals) == set(SIGNAL_NAMES)
        assert -1 <= pair.signals["best_passage"] <= 1
        # The catalog's nearest passage scores at least as well as any of the context's.
        assert pair.signals["gap_to_fresh"] <= 1e-3
        assert pair.signals["fresh_first_in_context"] == float(
            bool(pair.fresh) and pair.fresh[0] in pair.context
        )
        if pair.kind == "follow_up":  # labelled so because the first turn's context holds it
            assert pair.covered, pair.id
    summary = result.summary
    assert summary["pairs"] == {"follow_up": 2, "topic_shift": 2}
    assert summary["covered"]["follow_up"] == 2
    assert summary["chosen"] in SIGNAL_NAMES
    for name in SIGNAL_NAMES:
        spread = summary["signals"][name]["spread"]
        assert spread["covered"]["pairs"] + spread["not covered"]["pairs"] == 4
        best = summary["signals"][name]["best"]
        if best["threshold"] is None:  # every pair has the same value: nothing to cut
            assert name not in summary["ranking"]
            continue
        assert 0 <= best["covered_kept"] <= 1 and 0 <= best["uncovered_refreshed"] <= 1
        assert best["balanced"] <= summary["signals"][summary["chosen"]]["best"]["balanced"]

    table = result.markdown.splitlines()
    assert "| signal | covered | not covered | follow_up | topic_shift |" in table
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    spread_rows = [c for c in cells if c[0] in {f"`{n}`" for n in SIGNAL_NAMES} and len(c) == 5]
    best_rows = [c for c in cells if c[0] in {f"`{n}`" for n in SIGNAL_NAMES} and len(c) == 9]
    assert len(spread_rows) == len(SIGNAL_NAMES)
    assert [row[0] for row in best_rows] == [f"`{n}`" for n in summary["ranking"]]
    assert json.loads(json.dumps(result.data))["top_k"] == TOP_K
