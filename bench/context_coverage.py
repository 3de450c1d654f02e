"""Context coverage study (issue #13): when does a conversation's cached context cover the next
question, and when must the service retrieve for it?

    .venv/bin/python -m bench.context_coverage                 # tables on stdout, JSON file
    .venv/bin/python -m bench.context_coverage --write-docs    # also docs/benchmarks.md's block
    .venv/bin/python -m bench.context_coverage --mode hybrid   # contexts from hybrid retrieval

The sample catalog (``data/catalog``) is ingested into a new embedded Chroma in a temp dir by
the real ``IngestPipeline`` with the shipped ``SentenceTransformerEmbedder`` (as the retrieval
benchmark does). Every conversation pair of ``bench/data/retrieval_questions.jsonl``
(``topic_shift`` and ``follow_up``: a ``first`` question, then the ``question``) is played:

1. the *context*: the first question's top 5 passages from the service's ``Retriever`` in
   dense mode (``--mode hybrid``: the hybrid retrieval), what the freshness cache holds after
   the first turn;
2. the label: **covered** when the context already holds one of the second question's answer
   documents (so reusing it is right), else not covered (it must be extended);
3. the candidate signals a cache could judge coverage by, all from the second question's
   embedding (which the service computes anyway to retrieve):

   - ``best_passage``: the highest cosine similarity between the second question and the
     context's passages, against the passages' vectors *as stored in Chroma* (``Passage.vector``,
     handed back by the store with each passage: what the freshness cache compares); the
     passages' texts re-embedded give the same vectors (the study reports the largest
     difference);
   - ``query_similarity``: the cosine similarity of the two questions;
   - ``gap_to_fresh``: ``best_passage`` minus the second question's best score over the whole
     catalog (one nearest-neighbour query): 0 when the context holds the passage the question
     would retrieve first, negative by how much better the catalog answers it;
   - ``fresh_first_in_context``: 1 when the document the second question's own top 5 ranks
     first is in the context, else 0.

For every signal: its spread per label, and a sweep of thresholds (a context is kept while the
signal is at or above the threshold): the share of covered pairs kept, of not covered pairs
refreshed, and the same by kind (follow-ups kept fresh, topic shifts refreshed). The best
threshold maximises the mean of the two label shares; its margin is the distance to the nearest
pair on either side. Tables: ``bench.context_coverage_report``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from bench.context_coverage_report import (
    SIGNALS,
    PairResult,
    render_markdown,
    summarise,
)
from bench.repo_paths import SAMPLE_CATALOG
from bench.result_output import log_to_stderr, results_file, write_and_print
from bench.retrieval_catalogs import IngestedCatalog, ingest_catalog
from bench.retrieval_questions import CONVERSATION_KINDS, Question, load_questions
from rag_service.adapters.sentence_transformer_embedder import SentenceTransformerEmbedder
from rag_service.domain import Passage
from rag_service.settings import EmbeddingSettings, RetrievalSettings

RESULTS_FILE = results_file("context_coverage")
DOCS_SECTION = "context_coverage"  # the block between <!-- bench:context_coverage:... --> markers
TOP_K = 5
RetrievalMode = Literal["dense", "hybrid"]

Vector = Sequence[float]


@dataclass
class CoverageResult:
    catalog: dict[str, Any]
    summary: dict[str, Any]
    pairs: list[PairResult] = field(repr=False, default_factory=list)

    @property
    def markdown(self) -> str:
        return render_markdown(self.catalog, self.summary, self.pairs)

    @property
    def data(self) -> dict[str, Any]:
        return {
            "top_k": TOP_K,
            "catalog": self.catalog,
            "signals": {s.name: s.what for s in SIGNALS},
            "summary": self.summary,
            "pairs": [p.as_json() for p in self.pairs],
        }


def run(
    quick: bool = False,
    *,
    limit: int | None = None,
    mode: RetrievalMode = "dense",
    log: Callable[[str], None] | None = None,
) -> CoverageResult:
    """Ingest the sample catalog and play every conversation pair (the first ``limit`` of each
    kind when given). ``quick`` changes nothing: the study is small (the ``bench`` runner's
    interface passes it)."""
    say = log or log_to_stderr
    pairs = conversation_pairs(limit)
    embedder = SentenceTransformerEmbedder(EmbeddingSettings())
    embedder.load()
    with tempfile.TemporaryDirectory(prefix="context-coverage-") as tmp:
        say(f"context coverage: ingesting the sample catalog ({SAMPLE_CATALOG})")
        started = time.monotonic()
        catalog = ingest_catalog("sample", SAMPLE_CATALOG, Path(tmp) / "store", embedder)
        ingest_s = round(time.monotonic() - started, 1)
        say(f"context coverage: {len(pairs)} pairs")
        results, deviation = asyncio.run(_play_all(catalog, embedder, pairs, mode))
    return CoverageResult(
        catalog={
            "name": catalog.name,
            "mode": mode,
            "documents": catalog.documents,
            "chunks": catalog.chunks,
            "ingest_s": ingest_s,
            "stored_vs_reembedded_max_abs_diff": deviation,
        },
        summary=summarise(results),
        pairs=results,
    )


def conversation_pairs(limit: int | None = None) -> list[Question]:
    """The topic-shift and follow-up pairs, each kind cut to its first ``limit`` if given."""
    pairs = load_questions(kinds=CONVERSATION_KINDS)
    if limit is None:
        return pairs
    return [q for kind in CONVERSATION_KINDS for q in [p for p in pairs if p.kind == kind][:limit]]


async def _play_all(
    catalog: IngestedCatalog,
    embedder: SentenceTransformerEmbedder,
    pairs: list[Question],
    mode: RetrievalMode,
) -> tuple[list[PairResult], float]:
    settings = RetrievalSettings(mode=mode)
    retriever = catalog.retriever(embedder, settings)
    results: list[PairResult] = []
    deviation = 0.0
    for pair in pairs:
        assert pair.first is not None  # conversation kinds carry it (load_questions checks)
        context = await retriever.retrieve(pair.first, top_k=TOP_K)
        fresh = await retriever.retrieve(pair.question, top_k=TOP_K)
        (first_vector,) = embedder.embed([pair.first])
        started = time.perf_counter()
        (second_vector,) = embedder.embed([pair.question])
        embedded = time.perf_counter()
        (nearest,) = catalog.store.search(second_vector, top_k=1)  # no relevance threshold
        searched = time.perf_counter()
        stored = [_stored_vector(p) for p in context]
        reembedded = embedder.embed([p.text for p in context])
        for a, b in zip(stored, reembedded, strict=True):
            deviation = max(deviation, _max_abs_diff(a, b))
        context_docs = _distinct([p.doc_id for p in context])
        fresh_docs = _distinct([p.doc_id for p in fresh])
        best = max((_dot(second_vector, v) for v in stored), default=-1.0)
        signals = {
            "best_passage": best,
            "query_similarity": _dot(first_vector, second_vector),
            "gap_to_fresh": best - nearest.score,
            "fresh_first_in_context": float(bool(fresh_docs) and fresh_docs[0] in context_docs),
        }
        results.append(
            PairResult(
                id=pair.id,
                kind=pair.kind,
                first=pair.first,
                question=pair.question,
                answers=pair.answers,
                context=context_docs,
                fresh=fresh_docs,
                signals={name: round(value, 4) for name, value in signals.items()},
                embed_ms=round((embedded - started) * 1000, 3),
                nearest_ms=round((searched - embedded) * 1000, 3),
            )
        )
    return results, round(deviation, 6)


def _stored_vector(passage: Passage) -> Vector:
    """The passage's embedding as the store handed it back with the passage (what the
    freshness cache judges coverage with)."""
    if passage.vector is None:
        raise RuntimeError(f"the store returned passage {passage.id} without its embedding")
    return passage.vector


def _dot(a: Vector, b: Vector) -> float:
    # Both sides are unit vectors (the embedder normalises), so this is the cosine similarity.
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def _max_abs_diff(a: Vector, b: Vector) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def _distinct(doc_ids: list[str]) -> list[str]:
    return list(dict.fromkeys(doc_ids))


def write_docs(result: CoverageResult, command: str) -> Path:
    """Replace this study's "latest figures" block of docs/benchmarks.md (nothing else)."""
    from bench.__main__ import DOCS_FILE, latest_figures, replace_section

    text = DOCS_FILE.read_text(encoding="utf-8")
    block = latest_figures(result, command=command, quick=False)
    DOCS_FILE.write_text(replace_section(text, DOCS_SECTION, block), encoding="utf-8")
    return DOCS_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.context_coverage", description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="first N pairs of each kind")
    parser.add_argument(
        "--mode",
        choices=get_args(RetrievalMode),
        default="dense",
        help="the retrieval that builds the contexts (the labels are checked against dense)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help="replace the figures between the bench:context_coverage markers of docs/benchmarks.md",
    )
    args = parser.parse_args(argv)
    if args.write_docs and (args.mode != "dense" or args.limit is not None):
        parser.error("--write-docs records the whole study in dense mode: no --mode or --limit")
    result = run(limit=args.limit, mode=args.mode)
    write_and_print(result.markdown, result.data, args.output)
    if args.write_docs:
        command = " ".join([".venv/bin/python -m bench.context_coverage", *(argv or sys.argv[1:])])
        print(f"figures written to {write_docs(result, command)}")
    mislabelled = result.summary["follow_ups_not_covered"]
    if mislabelled and args.mode == "dense":
        # A follow-up is one the first turn's context answers: these labels are wrong.
        print(f"follow-ups the first question's context does not cover: {mislabelled}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
