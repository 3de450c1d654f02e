"""Lexical index benchmark: which engine, and what keeping it at the live version costs.

    .venv/bin/python -m bench.lexical_index            # 320, 2,000 and 20,000 products
    .venv/bin/python -m bench.lexical_index --quick    # 320 and 2,000
    ./scripts/bench --only lexical

Two tables:

1. **Engines side by side** on the catalog's own chunks (the generated catalog, chunked by the
   ingest pipeline): bm25s (``bm25s.BM25``, scores of every document, then the top 20) and
   tantivy through the service's ``TantivyLexicalIndex``; the time to index every chunk, and
   the median and p95 of one query over a fixed list of shop questions.
2. **Keeping the snapshot at the live version** (``rag_service.retrieval.catalog_snapshot``):
   the catalog ingested into an embedded Chroma (with a hashing embedder: what is timed is
   Chroma reads and indexing, not the encoder), then the time to load it whole (a process
   starting, or a version it cannot follow), and the time to follow a re-ingest that changes
   ten products by that version's changes alone.
"""

from __future__ import annotations

import hashlib
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.result_output import quick_or_full, results_file
from bench.retrieval_catalogs import generated_products, write_generated_catalog
from ingest.chunking import chunk_documents
from ingest.loaders import load_catalog
from ingest.pipeline import IngestPipeline
from rag_service.adapters.chroma_store import ChromaStore
from rag_service.adapters.tantivy_lexical_index import TantivyLexicalIndex
from rag_service.domain import IndexedText
from rag_service.retrieval.catalog_snapshot import CatalogSnapshots
from rag_service.settings import ChromaSettings, IngestSettings

RESULTS_FILE = results_file("lexical")
SIZES = (320, 2_000, 20_000)
QUICK_SIZES = (320, 2_000)
CHANGED_PRODUCTS = 10
TOP_N = 20
QUERIES = (
    "is BOT-00012 in stock",
    "warm down sleeping bag for winter camping",
    "do you ship to Austria",
    "return policy for worn boots",
    "Kestrel Ridge Hornli trekking boot",
    "which tent is lightest for two people",
    "how long is the warranty on stoves",
    "waterproof jacket with a hood",
)
REPEATS = 25
_WORD = re.compile(r"[a-z0-9]+")


class SeededEmbedder:
    """Random unit vectors seeded by each text: what is timed here is Chroma and the lexical
    index, and the real encoder would spend minutes on 20,000 products first."""

    dimension = 64
    model_name = "seeded-random-64"

    def load(self) -> None:
        """Nothing to load."""

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = []
        for text in texts:
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
            vector = np.random.default_rng(seed).standard_normal(self.dimension)
            vectors.append((vector / np.linalg.norm(vector)).tolist())
        return vectors


@dataclass(frozen=True)
class Chunked:
    products: int
    texts: list[str]


def chunk_texts(products: int, folder: Path) -> Chunked:
    catalog = write_generated_catalog(products, folder / "catalog")
    documents = load_catalog([catalog], base_dir=catalog).documents
    settings = IngestSettings()
    chunks = chunk_documents(
        documents, max_chars=settings.chunk_chars, overlap_chars=settings.chunk_overlap_chars
    )
    return Chunked(products, [f"{c.title}\n{c.text}" for c in chunks])


def timed_queries(search: Any) -> list[float]:
    times = []
    for _ in range(REPEATS):
        for query in QUERIES:
            started = time.perf_counter()
            search(query)
            times.append((time.perf_counter() - started) * 1000)
    return times


def engine_rows(chunked: Chunked) -> list[dict[str, Any]]:
    rows = []
    try:
        import bm25s
    except ImportError:  # the dev extra brings it; the service does not need it
        bm25s = None
    if bm25s is not None:
        started = time.perf_counter()
        corpus = [_WORD.findall(text.lower()) for text in chunked.texts]
        index = bm25s.BM25()
        index.index(corpus, show_progress=False)
        build_ms = (time.perf_counter() - started) * 1000

        def bm25s_search(query: str) -> None:
            scores = index.get_scores(_WORD.findall(query.lower()))
            np.argpartition(-scores, TOP_N)[:TOP_N]

        rows.append(_engine_row("bm25s", chunked, build_ms, timed_queries(bm25s_search)))
    started = time.perf_counter()
    searcher = TantivyLexicalIndex().apply(
        [IndexedText(str(i), text) for i, text in enumerate(chunked.texts)], ()
    )
    build_ms = (time.perf_counter() - started) * 1000
    times = timed_queries(lambda query: searcher.search(query, n=TOP_N))
    rows.append(_engine_row("tantivy (TantivyLexicalIndex)", chunked, build_ms, times))
    return rows


def _engine_row(
    engine: str, chunked: Chunked, build_ms: float, times: list[float]
) -> dict[str, Any]:
    return {
        "products": chunked.products,
        "chunks": len(chunked.texts),
        "engine": engine,
        "index_all_ms": round(build_ms, 1),
        "query_median_ms": round(statistics.median(times), 3),
        "query_p95_ms": round(sorted(times)[int(len(times) * 0.95)], 3),
    }


def snapshot_row(products: int, folder: Path) -> dict[str, Any]:
    """Ingest ``products``, load the snapshot whole, re-ingest ten changed products, follow."""
    catalog = write_generated_catalog(products, folder / "snapshot-catalog")
    store = ChromaStore.open(ChromaSettings(path=folder / "chroma", collection="lexical"))
    embedder = SeededEmbedder()
    IngestPipeline(store, embedder, IngestSettings()).run([catalog], base_dir=catalog)
    snapshots = CatalogSnapshots(store, TantivyLexicalIndex)
    started = time.perf_counter()
    whole = snapshots.current(store.live_catalog())
    full_ms = (time.perf_counter() - started) * 1000
    changed = generated_products(products)
    for item in changed[:CHANGED_PRODUCTS]:
        item["name"] = f"{item['name']} (revised)"
    _write_products(catalog / "products.jsonl", changed)
    IngestPipeline(store, embedder, IngestSettings()).run([catalog], base_dir=catalog)
    started = time.perf_counter()
    followed = snapshots.current(store.live_catalog())
    incremental_ms = (time.perf_counter() - started) * 1000
    if snapshots.stats.incremental_loads != 1:
        raise RuntimeError("the snapshot did not follow the re-ingest by its changes")
    return {
        "products": products,
        "passages": len(whole.records),
        "load_whole_ms": round(full_ms, 1),
        "changed_products": CHANGED_PRODUCTS,
        "follow_changes_ms": round(incremental_ms, 1),
        "passages_after": len(followed.records),
    }


def _write_products(path: Path, products: list[dict[str, Any]]) -> None:
    import json

    path.write_text("".join(json.dumps(p) + "\n" for p in products), encoding="utf-8")


@dataclass
class LexicalBenchResult:
    engines: list[dict[str, Any]]
    snapshots: list[dict[str, Any]]

    @property
    def data(self) -> dict[str, Any]:
        return {"engines": self.engines, "snapshots": self.snapshots}

    @property
    def markdown(self) -> str:
        lines = [
            f"Lexical engines on the catalog's chunks: index every chunk, then one query "
            f"(top {TOP_N}, {len(QUERIES)} shop questions x {REPEATS}):",
            "",
            "| products | chunks | engine | index all ms | query median ms | query p95 ms |",
            "|---:|---:|---|---:|---:|---:|",
        ]
        lines += [
            f"| {r['products']:,} | {r['chunks']:,} | {r['engine']} | {r['index_all_ms']} "
            f"| {r['query_median_ms']} | {r['query_p95_ms']} |"
            for r in self.engines
        ]
        lines += [
            "",
            "Keeping hybrid retrieval's snapshot at the live version (embedded Chroma): load a "
            f"version whole, and follow a re-ingest that changes {CHANGED_PRODUCTS} products:",
            "",
            "| products | passages | load whole ms | follow the changes ms |",
            "|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['products']:,} | {r['passages']:,} | {r['load_whole_ms']} "
            f"| {r['follow_changes_ms']} |"
            for r in self.snapshots
        ]
        return "\n".join(lines)


def run(quick: bool = False) -> LexicalBenchResult:
    sizes = QUICK_SIZES if quick else SIZES
    engines: list[dict[str, Any]] = []
    snapshots: list[dict[str, Any]] = []
    for products in sizes:
        with tempfile.TemporaryDirectory(prefix="lexical-bench-") as tmp:
            folder = Path(tmp)
            print(f"lexical bench: {products:,} products", file=sys.stderr, flush=True)
            engines += engine_rows(chunk_texts(products, folder))
            snapshots.append(snapshot_row(products, folder))
    return LexicalBenchResult(engines, snapshots)


def main(argv: list[str]) -> int:
    return quick_or_full(argv, run, quick="320 and 2,000 products only", output=RESULTS_FILE)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
