"""Smoke tests of the benchmarks: they run, measure what they claim, and report it.

Structure and invariants only (counts, what a re-ingest embeds, ratios that follow from them),
never timing thresholds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.__main__ import replace_section
from bench.ingest_bench import ChildProcesses, generate_catalog, run
from bench.ingest_children import InProcess, chunk_texts
from bench.ingest_timing import padded_positions
from bench.repo_paths import SAMPLE_CATALOG
from ingest.loaders import load_catalog
from ingest.pipeline import IngestPipeline
from tests.fakes.retrieval import HashingEmbedder

BATCH = IngestPipeline.DEFAULT_BATCH_TEXTS  # texts per embed call of the shipped pipeline


def catalog_counts(catalog: Path) -> tuple[int, int]:
    """Documents and chunks of ``catalog``, counted without the bench."""
    return len(load_catalog([catalog], base_dir=catalog).documents), len(chunk_texts(catalog))


def test_ingest_bench_measures_full_and_unchanged_ingest_of_both_catalogs(
    tmp_path: Path,
) -> None:
    generate_catalog(40, tmp_path / "generated" / "products.jsonl")
    expected = [catalog_counts(SAMPLE_CATALOG), catalog_counts(tmp_path / "generated")]
    embedder = HashingEmbedder(dimension=32)
    bare_calls: list[int] = []
    messages: list[str] = []

    result = run(
        products=40,
        measurer=InProcess(embedder, lambda texts: bare_calls.append(len(texts))),
        log=messages.append,
    )

    assert [c.catalog for c in result.catalogs] == ["sample", "generated 40"]
    assert expected[1][0] == 40
    for figures, (documents, chunks) in zip(result.catalogs, expected, strict=True):
        full, again = figures.full, figures.reingest
        assert (full.documents, full.chunks_embedded, full.chunks_reused) == (documents, chunks, 0)
        assert full.published
        assert full.port_calls["embed"] == math.ceil(chunks / BATCH)
        assert full.port_calls["publish"] == 1
        assert (again.documents, again.chunks_embedded, again.published) == (documents, 0, False)
        assert "embed" not in again.port_calls
        assert "publish" not in again.port_calls
        assert figures.encode.texts == chunks
        assert figures.reingest_ratio < 1
        assert full.peak_rss_mb is None  # in-process: no per-run peak to report
    # Only the two full ingests embedded anything; the baseline got each catalog in one call.
    assert embedder.texts_embedded == expected[0][1] + expected[1][1]
    assert bare_calls == [expected[0][1], expected[1][1]]
    assert messages == ["ingest bench: sample (" + str(SAMPLE_CATALOG) + ")", messages[1]]


def test_ingest_bench_result_renders_table_and_json(tmp_path: Path) -> None:
    result = run(products=40, measurer=InProcess(HashingEmbedder(16), len), log=lambda _: None)

    data = json.loads(json.dumps(result.data))
    assert data["generated_products"] == 40
    assert [c["catalog"] for c in data["catalogs"]] == ["sample", "generated 40"]
    assert data["catalogs"][1]["documents"] == 40
    assert data["catalogs"][1]["reingest"]["chunks_embedded"] == 0
    assert set(data["goals"]) == {"throughput_ratio_at_least_0.9", "reingest_ratio_at_most_0.05"}
    table = result.markdown.splitlines()
    assert table[2].startswith("| catalog | documents | chunks | full ingest s | docs/s |")
    assert table[4].startswith("| sample | ")
    assert table[5].startswith("| generated 40 | 40 | 40 | ")
    assert table[5].endswith("| n/a | n/a |")


def test_padded_positions_follow_sentence_transformers_batching() -> None:
    texts = ["aaaa", "a", "aaa", "aa"]
    tokens = [4, 1, 3, 2]
    # One call: sorted longest first, batches [4, 3] and [2, 1] -> 2*4 + 2*2.
    assert padded_positions(texts, tokens, call_size=4, batch_size=2) == 12
    # A call per batch keeps the given order: [4, 1] and [3, 2] -> 2*4 + 2*3.
    assert padded_positions(texts, tokens, call_size=2, batch_size=2) == 14


def test_replace_section_rewrites_only_between_the_markers() -> None:
    doc = (
        "# Benchmarks\n\nGoal prose.\n\n<!-- bench:ingest:start -->\nold figures\n"
        "<!-- bench:ingest:end -->\n\nMethod prose.\n"
    )

    updated = replace_section(doc, "ingest", "new figures")

    assert updated == doc.replace("old figures", "new figures")
    appended = replace_section(updated, "herd", "herd figures")
    assert appended.startswith(updated.rstrip())
    assert appended.endswith(
        "## herd: latest figures\n\n<!-- bench:herd:start -->\nherd figures\n"
        "<!-- bench:herd:end -->\n"
    )


@pytest.mark.slow
def test_ingest_bench_children_report_per_run_peaks_with_the_real_model(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    generate_catalog(12, catalog / "products.jsonl")
    children = ChildProcesses(log=lambda _: None)

    full = children.ingest(catalog, tmp_path / "store")
    again = children.ingest(catalog, tmp_path / "store")
    encode = children.encode(catalog)

    assert (full.documents, full.chunks_embedded, again.chunks_embedded) == (12, 12, 0)
    assert encode.texts == 12
    for measured in (full, again, encode):
        assert measured.model_rss_mb is not None
        assert measured.peak_rss_mb is not None
        assert measured.peak_rss_mb >= measured.model_rss_mb > 0
    padding = encode.padding
    assert padding["tokens"] <= padding["one_call"] <= padding["catalog_order"]
    assert padding["pipeline"] <= padding["catalog_order"]
