"""Retrieval benchmark: does the service's retrieval find the document that answers a question?

    .venv/bin/python -m bench.retrieval_eval            # sample catalog + 2,000 generated products
    .venv/bin/python -m bench.retrieval_eval --quick    # sample catalog only

Each catalog is ingested into a new embedded Chroma in a temp dir by the real
``IngestPipeline`` with the shipped ``SentenceTransformerEmbedder``. Then every question of
``bench/data/retrieval_questions.jsonl`` (see ``bench.retrieval_questions``) goes through each
retrieval *mode*, top 5 passages:

- ``raw``: the bare ``SentenceTransformer.encode`` and ``collection.query`` of chromadb on the
  live records collection, no service code: the floor the service's overhead is measured
  against, and what plain dense retrieval finds;
- ``dense``: the service's own path, ``rag_service.retrieval.Retriever`` with
  ``RAG_RETRIEVAL__MODE=dense`` (its worker thread, time limit and ``min_score`` threshold
  included): the service before hybrid retrieval;
- ``hybrid``: the same with the default settings: exact identifiers first, dense and BM25
  (tantivy) fused by reciprocal rank (``rag_service.retrieval.hybrid``).

A mode is one entry of ``MODES``: a name and a function that builds its search over an
ingested catalog.

A question is answered when a passage of one of its answer documents is among the passages
returned. Per catalog, mode and kind: hit@1, hit@5 and MRR (over the distinct documents of the
top 5 passages, in their order). Per catalog and mode: the median and p95 of the time of one
query. Topic-shift pairs: whether the second question's fresh sources hold its answer, and
whether the first question's sources (a context reused from the earlier turn) would have.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.repo_paths import SAMPLE_CATALOG
from bench.result_output import command_line, log_to_stderr, print_result, results_file
from bench.retrieval_catalogs import (
    IngestedCatalog,
    ingest_catalog,
    write_generated_catalog,
)
from bench.retrieval_questions import GENERATED_PRODUCTS, Question, load_questions
from bench.retrieval_report import Outcome, render_markdown, summarise
from rag_service.adapters.sentence_transformer_embedder import (
    SentenceTransformerEmbedder,
    resolve_model_location,
)
from rag_service.settings import EmbeddingSettings, RetrievalSettings

RESULTS_FILE = results_file("retrieval")
TOP_K = 5
WARM_UP_QUERIES = ("warm-up: is this in stock?", "warm-up: shipping to Norway", "BOT-00001")

# A search: the doc ids of the top-k passages for a query, best first, each once.
Search = Callable[[str], Awaitable[list[str]]]


@dataclass
class Setup:
    """What a mode builds its search from: one ingested catalog and the shared models."""

    catalog: IngestedCatalog
    embedder: SentenceTransformerEmbedder
    bare_model: Callable[[], Any]  # the bare SentenceTransformer, loaded once on first use


@dataclass(frozen=True)
class Mode:
    name: str
    what: str
    build: Callable[[Setup], Search]


def service_mode(settings: RetrievalSettings) -> Callable[[Setup], Search]:
    """The service's ``Retriever`` with ``settings`` over the ingested catalog, composed as
    ``create_app`` composes it. Hybrid loads the catalog into memory on its first query (a
    warm-up query, not measured)."""

    def build(setup: Setup) -> Search:
        retriever = setup.catalog.retriever(setup.embedder, settings)

        async def search(query: str) -> list[str]:
            passages = await retriever.retrieve(query, top_k=TOP_K)
            return distinct([p.doc_id for p in passages])

        return search

    return build


def raw_mode(setup: Setup) -> Search:
    """Bare encoder + chromadb query on the live records collection: no service code."""
    import chromadb
    from chromadb.config import Settings as ChromaClientSettings

    model = setup.bare_model()
    client = chromadb.PersistentClient(
        path=str(setup.catalog.chroma.path),
        settings=ChromaClientSettings(anonymized_telemetry=False, allow_reset=False),
    )
    # One full ingest into an empty store: every record of the collection is live.
    collection = client.get_collection(setup.catalog.records_collection)

    async def search(query: str) -> list[str]:
        vector = model.encode([query], normalize_embeddings=True)
        found = collection.query(
            query_embeddings=vector.tolist(), n_results=TOP_K, include=["metadatas"]
        )
        metadatas = found["metadatas"] or [[]]
        return distinct([str(meta["_doc_id"]) for meta in metadatas[0]])

    return search


MODES: tuple[Mode, ...] = (
    Mode("raw", "bare SentenceTransformer.encode + chromadb query, no service code", raw_mode),
    Mode(
        "dense",
        "the service's Retriever, RAG_RETRIEVAL__MODE=dense (before hybrid retrieval)",
        service_mode(RetrievalSettings(mode="dense")),
    ),
    Mode(
        "hybrid",
        "the service's Retriever, default settings (hybrid: identifiers, dense + BM25, RRF)",
        service_mode(RetrievalSettings()),
    ),
)


def _fusion_mode(rrf_k: int, lexical_weight: float, candidates: int = 20) -> Mode:
    name = f"hybrid k={rrf_k} bm25={lexical_weight} c={candidates}"
    settings = RetrievalSettings(rrf_k=rrf_k, lexical_weight=lexical_weight, candidates=candidates)
    return Mode(name, f"hybrid, {name}", service_mode(settings))


# ``--fusion-sweep``: the run that chose the fusion defaults (docs/benchmarks.md).
FUSION_SWEEP: tuple[Mode, ...] = (
    MODES[1],
    _fusion_mode(60, 1.0),
    _fusion_mode(60, 0.7),
    _fusion_mode(60, 0.5),
    _fusion_mode(60, 0.5, candidates=40),
    _fusion_mode(20, 0.7),
)


@dataclass
class RetrievalBenchResult:
    catalogs: list[dict[str, Any]]
    modes: list[dict[str, str]]
    summary: dict[str, Any]
    outcomes: list[Outcome] = field(repr=False, default_factory=list)

    @property
    def markdown(self) -> str:
        return render_markdown(self.catalogs, self.modes, self.summary)

    @property
    def data(self) -> dict[str, Any]:
        return {
            "top_k": TOP_K,
            "catalogs": self.catalogs,
            "modes": self.modes,
            "summary": self.summary,
            "outcomes": [o.as_json() for o in self.outcomes],
        }


def distinct(doc_ids: list[str]) -> list[str]:
    return list(dict.fromkeys(doc_ids))


def run(
    quick: bool = False,
    *,
    products: int | None = None,
    modes: tuple[Mode, ...] = MODES,
    log: Callable[[str], None] | None = None,
) -> RetrievalBenchResult:
    """Ingest the catalogs (sample; and ``products`` generated unless quick) and ask everything."""
    say = log or log_to_stderr
    questions = load_questions()
    embedder = SentenceTransformerEmbedder(EmbeddingSettings())
    embedder.load()
    bare = _BareModel()
    count = products if products is not None else (None if quick else GENERATED_PRODUCTS)
    outcomes: list[Outcome] = []
    catalogs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="retrieval-bench-") as tmp:
        work = Path(tmp)
        sources = [("sample", SAMPLE_CATALOG)]
        if count:
            generated = write_generated_catalog(count, work / "generated")
            sources.append((f"generated {count:,}", generated))
        for index, (name, path) in enumerate(sources):
            say(f"retrieval bench: ingesting {name} ({path})")
            started = time.monotonic()
            catalog = ingest_catalog(name, path, work / f"store-{index}", embedder)
            catalogs.append(
                {
                    "name": name,
                    "documents": catalog.documents,
                    "chunks": catalog.chunks,
                    "ingest_s": round(time.monotonic() - started, 1),
                }
            )
            setup = Setup(catalog, embedder, bare)
            say(f"retrieval bench: {len(questions)} questions x {len(modes)} modes on {name}")
            outcomes += asyncio.run(_ask_all(setup, modes, questions))
    return RetrievalBenchResult(
        catalogs=catalogs,
        modes=[{"name": m.name, "what": m.what} for m in modes],
        summary=summarise(outcomes, [c["name"] for c in catalogs], [m.name for m in modes]),
        outcomes=outcomes,
    )


async def _ask_all(
    setup: Setup, modes: tuple[Mode, ...], questions: list[Question]
) -> list[Outcome]:
    searches = {mode.name: mode.build(setup) for mode in modes}
    for search in searches.values():  # first calls load kernels and caches; not measured
        for query in WARM_UP_QUERIES:
            await search(query)
    names = list(searches)
    outcomes = []
    for number, question in enumerate(questions):
        # Rotate which mode goes first so that neither always meets a cold or busy moment.
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            search = searches[name]
            earlier = await search(question.first) if question.first is not None else None
            started = time.perf_counter()
            found = await search(question.question)
            seconds = time.perf_counter() - started
            outcomes.append(
                Outcome(
                    catalog=setup.catalog.name,
                    mode=name,
                    question=question.id,
                    kind=question.kind,
                    rank=_rank(found, question.answers),
                    seconds=seconds,
                    found=found,
                    earlier_holds_answer=(
                        None if earlier is None else _rank(earlier, question.answers) is not None
                    ),
                    variant=question.variant,
                )
            )
    return outcomes


def _rank(found: list[str], answers: tuple[str, ...]) -> int | None:
    """1-based rank of the first answer document among ``found``; None if absent."""
    for rank, doc_id in enumerate(found, start=1):
        if doc_id in answers:
            return rank
    return None


class _BareModel:
    """The shipped model as a bare SentenceTransformer, loaded on the first call only."""

    def __init__(self) -> None:
        self._model: Any = None

    def __call__(self) -> Any:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            location = resolve_model_location(EmbeddingSettings().model)
            self._model = SentenceTransformer(location, device="cpu")
        return self._model


def main(argv: list[str] | None = None) -> int:
    parser = command_line(
        "bench.retrieval_eval", __doc__, quick="the sample catalog only", output=RESULTS_FILE
    )
    parser.add_argument("--products", type=int, default=None, help="generated catalog size")
    parser.add_argument(
        "--fusion-sweep",
        action="store_true",
        help="dense beside hybrid with several fusion settings (how the defaults were chosen)",
    )
    args = parser.parse_args(argv)
    modes = FUSION_SWEEP if args.fusion_sweep else MODES
    result = run(args.quick, products=args.products, modes=modes)
    return print_result(result, args.output)


if __name__ == "__main__":
    raise SystemExit(main())
