"""A separate ingest process for crash and lock tests.

    python -m tests.ingest.ingest_worker ingest CATALOG [--delay S]   # prints progress lines
    python -m tests.ingest.ingest_worker check [--query Q ...]          # prints the live state

Store settings come from RAG_CHROMA__* like the real CLI. The embedder is the deterministic
hashing fake, slowed down per batch so that a test can kill the process mid-way.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ingest.pipeline import IngestPipeline
from rag_service.adapters.chroma_store import ChromaStore
from rag_service.adapters.tantivy_lexical_index import TantivyLexicalIndex
from rag_service.domain import Vector
from rag_service.ingest_composition import ingest_lock
from rag_service.retrieval import HybridSearch
from rag_service.retrieval.catalog_snapshot import CatalogSnapshots
from rag_service.settings import RetrievalSettings, Settings
from tests.fakes.retrieval import HashingEmbedder


class SlowEmbedder(HashingEmbedder):
    def __init__(self, delay_s: float) -> None:
        super().__init__(dimension=64)
        self._delay_s = delay_s

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        time.sleep(self._delay_s)
        return super().embed(texts)


def progress(phase: str, done: int, total: int) -> None:
    print(f"{phase} {done}/{total}", flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["ingest", "check"])
    parser.add_argument("catalog", nargs="?")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--query", action="append", default=[])
    args = parser.parse_args(argv)
    settings = Settings()
    with ingest_lock(settings):
        store = ChromaStore.open(settings.chroma)
        if args.command == "check":
            state = store.live_state()
            ids: list[str] = []
            passages = 0
            if state.records_collection:
                records = store.records(state.records_collection)
                ids = sorted(records.live_records(state.version))
                passages = len(store.search(HashingEmbedder(64).vector("gear"), top_k=5))
            found = hybrid_results(store, args.query)
            print(
                json.dumps({"version": state.version, "ids": ids, "searchable": passages, **found})
            )
            return 0
        pipeline = IngestPipeline(store, SlowEmbedder(args.delay), settings.ingest, batch_size=8)
        report = pipeline.run([Path(args.catalog)], progress=progress)
        print(f"published {report.version_after}", flush=True)
        return 0


def hybrid_results(store: ChromaStore, queries: list[str]) -> dict[str, dict[str, list[str]]]:
    """Per query: the documents of the lexical index's best 3 and of hybrid retrieval's top 3,
    as this process loads them from the live catalog (what a restarted service would see)."""
    snapshots = CatalogSnapshots(store, TantivyLexicalIndex)
    search = HybridSearch(store, snapshots, RetrievalSettings(min_score=-1))
    lexical: dict[str, list[str]] = {}
    hybrid: dict[str, list[str]] = {}
    for query in queries:
        vector = HashingEmbedder(64).vector(query)
        hybrid[query] = [p.doc_id for p in search.find(query, vector, top_k=3, filters=None)]
        snapshot = snapshots.current(store.live_catalog())
        lexical[query] = [snapshot.records[r].doc_id for r in snapshot.lexical.search(query, n=3)]
    return {"lexical": lexical, "hybrid": hybrid}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
