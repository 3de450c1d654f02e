"""The catalogs the retrieval benchmark searches, ingested by the service's own pipeline.

Two catalogs: the committed sample (``data/catalog``: 320 products, the policies, the FAQ) and a
larger one for scale: the same policies and FAQ with ``generate_products(N, seed=7)``. The
generator's products extend one another, so the larger catalog's first 320 products are the
sample's and every label of the question set holds in both; the rest are distractors.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.ingest_bench import GENERATOR
from bench.repo_paths import SAMPLE_CATALOG
from ingest.pipeline import IngestPipeline
from rag_service.adapters.chroma_store import ChromaStore
from rag_service.adapters.tantivy_lexical_index import TantivyLexicalIndex
from rag_service.ports import Embedder
from rag_service.retrieval import Retriever, passage_finder
from rag_service.settings import ChromaSettings, IngestSettings, RetrievalSettings

SAMPLE_SEED = 7  # the seed of the committed sample catalog (scripts/generate_catalog.py)
COLLECTION = "bench"


@dataclass(frozen=True)
class IngestedCatalog:
    name: str
    documents: int
    chunks: int
    chroma: ChromaSettings
    store: ChromaStore

    @property
    def records_collection(self) -> str:
        """The Chroma collection that holds the live catalog's records."""
        name = self.store.live_state().records_collection
        if name is None:
            raise RuntimeError(f"{self.name}: nothing was published")
        return name

    def retriever(self, embedder: Embedder, settings: RetrievalSettings) -> Retriever:
        """The service's ``Retriever`` over this catalog, composed as ``create_app`` composes it
        (the Tantivy lexical index for hybrid search)."""
        finder = passage_finder(self.store, settings, TantivyLexicalIndex)
        return Retriever(embedder, finder, settings)


def generated_products(count: int) -> list[dict[str, Any]]:
    """``generate_products(count, seed=7)`` of scripts/generate_catalog.py, as dicts."""
    module = _generator()
    products: list[dict[str, Any]] = module.generate_products(count, SAMPLE_SEED)
    return products


def write_generated_catalog(count: int, folder: Path) -> Path:
    """``folder`` holding the sample's policies and FAQ and ``count`` generated products."""
    products = generated_products(count)
    sample = (SAMPLE_CATALOG / "products.jsonl").read_text(encoding="utf-8").splitlines()
    skus = [line.split('"sku": "', 1)[1].split('"', 1)[0] for line in sample if line.strip()]
    if [p["sku"] for p in products[: len(skus)]] != skus:
        raise RuntimeError("the generated catalog no longer extends the sample catalog")
    shutil.copytree(SAMPLE_CATALOG, folder, ignore=shutil.ignore_patterns("products.jsonl"))
    _generator().write_jsonl(products, folder / "products.jsonl")
    return folder


def ingest_catalog(
    name: str, catalog: Path, store_dir: Path, embedder: Embedder
) -> IngestedCatalog:
    """A full ``IngestPipeline.run`` of ``catalog`` into a new embedded Chroma at ``store_dir``."""
    chroma = ChromaSettings(path=store_dir, collection=COLLECTION)
    store = ChromaStore.open(chroma)
    report = IngestPipeline(store, embedder, IngestSettings()).run([catalog], base_dir=catalog)
    if not report.published:
        raise RuntimeError(f"{name}: the ingest published nothing")
    return IngestedCatalog(name, report.documents, report.chunks_embedded, chroma, store)


def _generator() -> Any:
    name = "generate_catalog"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, GENERATOR)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the catalog generator {GENERATOR}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module
