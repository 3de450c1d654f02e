"""The retrieval benchmark: its question set is sound, and the quick run reports sane figures.

The labels are checked against the catalog itself; the quick run (sample catalog, shipped model,
real ingest, the service's Retriever) is checked for structure and ranges, never for timings.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from bench.__main__ import BENCHMARKS
from bench.repo_paths import SAMPLE_CATALOG
from bench.retrieval_catalogs import generated_products
from bench.retrieval_eval import MODES, TOP_K, run
from bench.retrieval_questions import (
    GENERATED_PRODUCTS,
    KINDS,
    SKU_SPELLINGS,
    generated_questions,
    load_questions,
    sku_spellings,
)
from bench.retrieval_report import Outcome, scores
from ingest.loaders import load_catalog


def test_every_label_names_a_document_of_the_sample_catalog() -> None:
    doc_ids = {d.doc_id for d in load_catalog([SAMPLE_CATALOG], base_dir=SAMPLE_CATALOG).documents}
    questions = load_questions()

    assert {q.kind for q in questions} == set(KINDS)
    assert len({q.id for q in questions}) == len(questions)
    for question in questions:
        assert set(question.answers) <= doc_ids, question.id
        # Generated questions name their product; hand-written ones never copy a whole heading.
        if question.kind == "sku":
            spelled = dict(zip(SKU_SPELLINGS, sku_spellings(question.answers[0]), strict=True))
            assert spelled[question.variant or ""] in question.question


def test_generated_lines_are_what_the_generator_makes_today() -> None:
    committed = [q for q in load_questions() if q.origin == "generated"]

    assert committed == generated_questions(generated_products(GENERATED_PRODUCTS))
    spellings = Counter(q.answers[0] for q in committed if q.kind == "sku")
    assert set(spellings.values()) == {5}


def test_scores_follow_the_ranks() -> None:
    def outcome(rank: int | None) -> Outcome:
        return Outcome("c", "m", "q", "sku", rank, 0.01, [])

    figures = scores([outcome(1), outcome(3), outcome(None), outcome(2)])

    assert figures == {"questions": 4, "hit@1": 0.25, "hit@5": 0.75, "mrr": 0.458}


@pytest.mark.slow
def test_quick_run_reports_every_kind_and_mode_with_figures_in_range() -> None:
    assert BENCHMARKS["retrieval"] == "bench.retrieval_eval"

    result = run(quick=True, log=lambda _: None)

    modes = [m.name for m in MODES]
    questions = load_questions()
    assert [c["name"] for c in result.catalogs] == ["sample"]
    assert result.catalogs[0]["documents"] == len(
        load_catalog([SAMPLE_CATALOG], base_dir=SAMPLE_CATALOG).documents
    )
    assert len(result.outcomes) == len(questions) * len(modes)
    assert all(len(o.found) <= TOP_K for o in result.outcomes)
    by_mode = result.summary["sample"]
    assert list(by_mode) == modes
    for figures in by_mode.values():
        assert list(figures["kinds"]) == [*KINDS, "all"]
        for s in figures["kinds"].values():
            assert 0 <= s["hit@1"] <= s["mrr"] <= s["hit@5"] <= 1
        assert figures["kinds"]["all"]["questions"] == len(questions)
        assert figures["kinds"]["semantic"]["hit@5"] > 0.5  # dense retrieval works at all
        latency = figures["latency"]
        assert 0 < latency["median_ms"] <= latency["p95_ms"]
        assert figures["topic_shift"]["pairs"] == sum(q.kind == "topic_shift" for q in questions)
        by_spelling = figures["sku_spellings"]
        assert list(by_spelling) == list(SKU_SPELLINGS)
        assert (
            sum(s["questions"] for s in by_spelling.values())
            == figures["kinds"]["sku"]["questions"]
        )

    table = result.markdown.splitlines()
    assert "| catalog | mode | kind | questions | hit@1 | hit@5 | MRR |" in table
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    kind_rows = [c for c in cells if c[0] == "sample" and c[2] in (*KINDS, "**all**")]
    assert len(kind_rows) == len(modes) * (len(KINDS) + 1)
    skus = sum(q.kind == "sku" for q in questions)
    assert ["sample", "dense", "sku", str(skus)] in [row[:4] for row in kind_rows]
    spelling_header = ["catalog", "mode", *SKU_SPELLINGS]
    assert spelling_header in cells
    assert json.loads(json.dumps(result.data))["top_k"] == TOP_K
