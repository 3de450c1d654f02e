"""Hybrid retrieval over real Chroma (embedded and `chroma run`): SKU spellings, the lexical
index following re-ingests record by record, and a killed ingest leaving both indexes old."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ingest.pipeline import IngestPipeline
from rag_service.adapters.chroma_store import ChromaStore
from rag_service.adapters.tantivy_lexical_index import TantivyLexicalIndex
from rag_service.retrieval import DenseSearch, HybridSearch
from rag_service.retrieval.catalog_snapshot import CatalogSnapshots
from rag_service.settings import ChromaSettings, IngestSettings, RetrievalSettings
from tests.fakes.retrieval import HashingEmbedder
from tests.ingest.catalogs import product, write_products
from tests.ingest.test_atomic import check, ingest_and_kill, run_worker

SETTINGS = RetrievalSettings(top_k=3, min_score=-1)
OLD_NAME, NEW_NAME = "Hornli Trekking Boot", "Osprey Summit Boot"


def catalog(boot_name: str) -> list[dict[str, Any]]:
    """40 ordinary products, the boot K-7416-F and two SKUs one character away from it."""
    return [product(i) for i in range(40)] + [
        product(100, sku="K-7416-F", name=boot_name),
        product(101, sku="K-7416-G", name="Hornet Approach Shoe"),
        product(102, sku="K-7417-F", name="Kestrel Gaiter"),
    ]


def ingest(store: ChromaStore, folder: Path, products: list[dict[str, Any]]) -> int:
    write_products(folder / "products.jsonl", products)
    embedder = HashingEmbedder(dimension=64)
    report = IngestPipeline(store, embedder, IngestSettings(max_delete_share=1.0)).run([folder])
    assert report.published
    return report.version_after


def hybrid(store: ChromaStore) -> tuple[HybridSearch, CatalogSnapshots]:
    snapshots = CatalogSnapshots(store, TantivyLexicalIndex)
    return HybridSearch(store, snapshots, SETTINGS), snapshots


def top_documents(search: HybridSearch | DenseSearch, query: str) -> list[str]:
    vector = HashingEmbedder(dimension=64).vector(query)
    return [p.doc_id for p in search.find(query, vector, top_k=3, filters=None)]


def lexical_documents(snapshots: CatalogSnapshots, store: ChromaStore, query: str) -> list[str]:
    snapshot = snapshots.current(store.live_catalog())
    return [snapshot.records[r].doc_id for r in snapshot.lexical.search(query, n=3)]


@pytest.mark.parametrize("spelling", ["k-7416-f", "K 7416 F", "K7416F", "Is K-7416-F in stock?"])
def test_sku_spellings_find_the_product_first(
    store: ChromaStore, tmp_path: Path, spelling: str
) -> None:
    ingest(store, tmp_path / "catalog", catalog(OLD_NAME))
    search, _ = hybrid(store)

    assert top_documents(search, spelling)[0] == "K-7416-F"


def test_a_renamed_product_is_found_by_its_new_name_and_not_the_old(
    store: ChromaStore, tmp_path: Path
) -> None:
    ingest(store, tmp_path / "catalog", catalog(OLD_NAME))
    search, snapshots = hybrid(store)
    assert lexical_documents(snapshots, store, "Hornli")[:1] == ["K-7416-F"]

    ingest(store, tmp_path / "catalog", catalog(NEW_NAME))

    assert top_documents(search, "Osprey Summit")[0] == "K-7416-F"
    assert lexical_documents(snapshots, store, "Osprey")[:1] == ["K-7416-F"]
    assert lexical_documents(snapshots, store, "Hornli") == []
    # Moved to version 2 by its changes alone, and the same as a load of the whole catalog.
    assert (snapshots.stats.full_loads, snapshots.stats.incremental_loads) == (1, 1)
    _, fresh = hybrid(store)
    moved, whole = (s.current(store.live_catalog()) for s in (snapshots, fresh))
    assert moved.records == whole.records
    for query in ("Osprey Summit", "Hornet", "k 7417 f", "gear for the trail"):
        assert lexical_documents(snapshots, store, query) == lexical_documents(fresh, store, query)


def test_dense_mode_gives_the_stores_own_search(store: ChromaStore, tmp_path: Path) -> None:
    ingest(store, tmp_path / "catalog", catalog(OLD_NAME))
    vector = HashingEmbedder(dimension=64).vector("approach shoe")

    found = DenseSearch(store, SETTINGS).find("approach shoe", vector, top_k=3, filters=None)

    assert found == store.search(vector, top_k=3)


@pytest.mark.slow
def test_a_killed_ingest_leaves_both_indexes_at_the_old_version(
    chroma_settings: ChromaSettings, tmp_path: Path
) -> None:
    queries = ("Hornli", "Osprey Summit")
    v1 = write_products(tmp_path / "v1" / "products.jsonl", catalog(OLD_NAME))
    # The rename plus enough new products that the kill lands mid-embedding.
    v2 = write_products(
        tmp_path / "v2" / "products.jsonl",
        catalog(NEW_NAME) + [product(i) for i in range(200, 260)],
    )
    assert run_worker(chroma_settings, "ingest", str(v1)).returncode == 0
    reader: tuple[HybridSearch, CatalogSnapshots] | None = None
    if chroma_settings.host:  # a server takes a reader beside the ingest: load version 1 now
        server_store = ChromaStore.open(chroma_settings)
        reader = hybrid(server_store)
        assert top_documents(reader[0], "Hornli")[0] == "K-7416-F"

    ingest_and_kill(chroma_settings, v2, "embed 40/61")  # 60 new products and the rename

    after = check(chroma_settings, *queries)
    assert after["version"] == 1
    assert after["lexical"]["Hornli"][:1] == ["K-7416-F"]
    assert "K-7416-F" not in after["lexical"]["Osprey Summit"]
    if reader is not None:
        assert lexical_documents(reader[1], server_store, "Osprey") == []
        assert lexical_documents(reader[1], server_store, "Hornli")[:1] == ["K-7416-F"]
    assert run_worker(chroma_settings, "ingest", str(v2)).returncode == 0
    converged = check(chroma_settings, *queries)
    assert converged["version"] == 2
    assert converged["lexical"]["Osprey Summit"][:1] == ["K-7416-F"]
    assert converged["lexical"]["Hornli"] == []
    if reader is not None:
        assert lexical_documents(reader[1], server_store, "Osprey")[:1] == ["K-7416-F"]
