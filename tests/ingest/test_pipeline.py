"""Incremental ingest: hash-based skip, vector reuse, deletion, append, bad input, dry run."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.pipeline import IngestPipeline
from rag_service.adapters.chroma_store import ChromaStore
from rag_service.errors import CatalogFormatError, InvalidInput
from rag_service.settings import IngestSettings
from tests.fakes.retrieval import HashingEmbedder
from tests.ingest.catalogs import product, write_policy, write_products


@pytest.fixture
def embedder() -> HashingEmbedder:
    return HashingEmbedder(dimension=64)


@pytest.fixture
def pipeline(store: ChromaStore, embedder: HashingEmbedder) -> IngestPipeline:
    return IngestPipeline(store, embedder, IngestSettings(), batch_size=8)


def visible_ids(store: ChromaStore) -> set[str]:
    state = store.live_state()
    assert state.records_collection
    return set(store.records(state.records_collection).live_records(state.version))


def stored_count(store: ChromaStore) -> int:
    state = store.live_state()
    assert state.records_collection
    return store.records(state.records_collection).count()


def ingested(pipeline: IngestPipeline, tmp_path: Path, count: int) -> Path:
    """``p.jsonl`` with the first ``count`` products, ingested once; its path."""
    catalog = write_products(tmp_path / "p.jsonl", [product(i) for i in range(count)])
    pipeline.run([catalog])
    return catalog


def test_first_ingest_adds_everything_and_publishes_version_1(
    pipeline: IngestPipeline, store: ChromaStore, embedder: HashingEmbedder, tmp_path: Path
) -> None:
    catalog = write_products(tmp_path / "p.jsonl", [product(i) for i in range(20)])
    policy = write_policy(tmp_path / "returns.md")
    report = pipeline.run([catalog, policy])
    assert (report.added, report.updated, report.unchanged, report.deleted) == (22, 0, 0, 0)
    assert report.published and report.version_after == 1
    assert embedder.texts_embedded == report.chunks_embedded == 22
    info = store.catalog_info()
    assert (info.version, info.document_count, info.chunk_count) == (1, 22, 22)
    assert info.embedding_model == embedder.model_name


def test_unchanged_reingest_embeds_nothing_and_keeps_the_version(
    pipeline: IngestPipeline, store: ChromaStore, embedder: HashingEmbedder, tmp_path: Path
) -> None:
    catalog = ingested(pipeline, tmp_path, 20)
    embedded = embedder.texts_embedded
    report = pipeline.run([catalog])
    assert (report.added, report.updated, report.unchanged, report.deleted) == (0, 0, 20, 0)
    assert not report.published and report.version_after == 1
    assert embedder.texts_embedded == embedded
    assert store.live_version() == 1


def test_changed_document_is_reembedded_alone(
    pipeline: IngestPipeline, store: ChromaStore, embedder: HashingEmbedder, tmp_path: Path
) -> None:
    catalog = ingested(pipeline, tmp_path, 20)
    before = embedder.texts_embedded
    changed = [product(i) for i in range(20)]
    changed[3]["description"] = "Now with a completely new waterproof membrane."
    write_products(catalog, changed)
    report = pipeline.run([catalog])
    assert (report.added, report.updated, report.unchanged) == (0, 1, 19)
    assert embedder.texts_embedded - before == 1
    assert store.live_version() == 2
    texts = {p.doc_id: p.text for p in store.search(embedder.vector("membrane"), top_k=3)}
    assert "waterproof membrane" in texts["SKU-00003"]


def test_identical_text_reuses_the_stored_vector(
    pipeline: IngestPipeline, store: ChromaStore, embedder: HashingEmbedder, tmp_path: Path
) -> None:
    catalog = ingested(pipeline, tmp_path, 5)
    before = embedder.texts_embedded
    # Moved to another file: the stored record changes (source), the embedded text does not.
    catalog.unlink()
    moved = write_products(tmp_path / "moved.jsonl", [product(i) for i in range(5)])
    report = pipeline.run([moved])
    assert report.updated == 5 and report.chunks_reused == 5 and report.chunks_embedded == 0
    assert embedder.texts_embedded == before
    assert store.catalog_info().sources == {"moved.jsonl": 5}


def test_sync_mode_deletes_missing_documents_and_append_keeps_them(
    pipeline: IngestPipeline, store: ChromaStore, tmp_path: Path
) -> None:
    catalog = ingested(pipeline, tmp_path, 10)
    write_products(catalog, [product(i) for i in range(8)])
    appended = pipeline.run([catalog], append=True)
    assert appended.kept == 2 and appended.deleted == 0 and not appended.published
    assert len(visible_ids(store)) == 10
    synced = pipeline.run([catalog])
    assert synced.deleted == 2 and synced.published
    assert visible_ids(store) == {f"SKU-{i:05d}#0" for i in range(8)}
    assert store.catalog_info().document_count == 8


def test_load_errors_skip_the_record_but_protect_its_file_from_deletions(
    pipeline: IngestPipeline, store: ChromaStore, tmp_path: Path
) -> None:
    catalog = ingested(pipeline, tmp_path, 5)
    lines = catalog.read_text().splitlines()
    lines[2] = '{"sku": "SKU-00002", "name": '  # malformed JSON where SKU-00002 was
    lines.append('{"sku": "SKU-00099"}')  # missing fields
    catalog.write_text("\n".join(lines) + "\n")
    report = pipeline.run([catalog])
    assert [(p.file, p.line) for p in report.failed] == [("p.jsonl", 3), ("p.jsonl", 6)]
    assert report.deleted == 0 and report.kept == 1
    assert "SKU-00002#0" in visible_ids(store)


def test_strict_mode_aborts_and_leaves_the_live_catalog_untouched(
    pipeline: IngestPipeline, store: ChromaStore, tmp_path: Path
) -> None:
    catalog = ingested(pipeline, tmp_path, 5)
    before = visible_ids(store)
    write_products(catalog, [product(i, description="changed") for i in range(5)])
    with catalog.open("a") as f:
        f.write("not json\n")
    with pytest.raises(CatalogFormatError) as raised:
        pipeline.run([catalog], strict=True)
    assert (raised.value.file, raised.value.line) == ("p.jsonl", 6)
    assert store.live_version() == 1 and visible_ids(store) == before
    assert stored_count(store) == 5


def test_an_empty_catalog_never_wipes_the_live_one(
    pipeline: IngestPipeline, store: ChromaStore, tmp_path: Path
) -> None:
    ingested(pipeline, tmp_path, 3)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InvalidInput, match="no documents found"):
        pipeline.run([empty])
    assert len(visible_ids(store)) == 3


def test_dry_run_reports_changes_and_writes_nothing(
    pipeline: IngestPipeline, store: ChromaStore, embedder: HashingEmbedder, tmp_path: Path
) -> None:
    catalog = ingested(pipeline, tmp_path, 6)
    count, embedded = stored_count(store), embedder.texts_embedded
    write_products(catalog, [product(i, price=1.0) for i in range(4)] + [product(50)])
    report = pipeline.run([catalog], dry_run=True)
    assert (report.added, report.updated, report.deleted, report.dry_run) == (1, 4, 2, True)
    assert stored_count(store) == count and embedder.texts_embedded == embedded
    assert store.live_version() == 1


def test_a_new_embedding_model_reembeds_everything(store: ChromaStore, tmp_path: Path) -> None:
    catalog = write_products(tmp_path / "p.jsonl", [product(i) for i in range(4)])
    IngestPipeline(store, HashingEmbedder(64), IngestSettings()).run([catalog])
    first = store.live_state().records_collection
    other = HashingEmbedder(32)
    write_products(catalog, [product(i) for i in range(3)])
    report = IngestPipeline(store, other, IngestSettings()).run([catalog], confirm_deletions=True)
    assert (report.updated, report.deleted, report.chunks_embedded) == (3, 1, 3)
    assert report.chunks_reused == 0
    state = store.live_state()
    assert state.embedding_model == other.model_name
    assert state.records_collection != first and state.previous_collection == first
    assert len(store.search(other.vector("tents"), top_k=5)) == 3


def test_a_model_switch_refuses_to_drop_appended_documents(
    store: ChromaStore, tmp_path: Path
) -> None:
    catalog = write_products(tmp_path / "p.jsonl", [product(i) for i in range(4)])
    IngestPipeline(store, HashingEmbedder(64), IngestSettings()).run([catalog])
    write_products(catalog, [product(i) for i in range(3)])
    with pytest.raises(InvalidInput, match="switching models"):
        IngestPipeline(store, HashingEmbedder(32), IngestSettings()).run([catalog], append=True)
    assert store.live_version() == 1


def test_a_shrinking_document_drops_its_tail_chunks(
    store: ChromaStore, embedder: HashingEmbedder, tmp_path: Path
) -> None:
    pipeline = IngestPipeline(
        store, embedder, IngestSettings(chunk_chars=200, chunk_overlap_chars=0)
    )
    long_text = " ".join(f"Sentence number {i} talks about tents." for i in range(30))
    catalog = write_products(tmp_path / "p.jsonl", [product(1, description=long_text)])
    pipeline.run([catalog])
    assert len(visible_ids(store)) > 2
    write_products(catalog, [product(1, description="Short now.")])
    report = pipeline.run([catalog])
    assert report.updated == 1
    assert visible_ids(store) == {"SKU-00001#0"}


def test_a_sync_only_deletes_within_the_paths_it_was_given(
    pipeline: IngestPipeline, store: ChromaStore, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog"
    a = write_products(catalog / "a.jsonl", [product(i) for i in range(4)])
    b = write_products(catalog / "b.jsonl", [product(i) for i in range(10, 13)])
    pipeline.run([catalog])
    write_products(a, [product(i) for i in range(3)])  # SKU-00003 removed from a.jsonl
    only_a = pipeline.run([a])
    assert (only_a.deleted, only_a.kept) == (1, 3)  # b.jsonl's products are out of scope
    assert visible_ids(store) == {f"SKU-{i:05d}#0" for i in (0, 1, 2, 10, 11, 12)}
    b.unlink()
    # the folder is the whole catalog: b.jsonl is gone (half of it, so confirmed)
    whole = pipeline.run([catalog], confirm_deletions=True)
    assert whole.deleted == 3
    assert visible_ids(store) == {f"SKU-{i:05d}#0" for i in (0, 1, 2)}
