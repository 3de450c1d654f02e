"""What a sync may delete: only below the paths it is given (named from the catalog root), only
live documents that may be served, and never a large share of the catalog unconfirmed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ingest.pipeline import IngestPipeline, choose_catalog_root
from rag_service.adapters.chroma_store import ChromaStore
from rag_service.errors import DeletionNotConfirmed
from rag_service.ingest_composition import ingest_catalog
from rag_service.settings import ChromaSettings, IngestSettings, Settings
from tests.fakes.retrieval import HashingEmbedder
from tests.ingest.catalogs import product, write_policy, write_products


@pytest.fixture
def pipeline(store: ChromaStore) -> IngestPipeline:
    return IngestPipeline(store, HashingEmbedder(64), IngestSettings(), batch_size=8)


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    """12 products, and two policies of two sections each in a subfolder: 16 documents."""
    root = tmp_path / "catalog"
    write_products(root / "products.jsonl", [product(i) for i in range(12)])
    write_policy(root / "policies" / "returns.md")
    write_policy(root / "policies" / "shipping.md")
    return root


def live_ids(store: ChromaStore) -> set[str]:
    state = store.live_state()
    assert state.records_collection
    return {
        r.doc_id
        for r in store.records(state.records_collection).live_records(state.version).values()
    }


def test_a_subfolder_sync_deletes_only_within_the_subfolder(
    pipeline: IngestPipeline, store: ChromaStore, catalog: Path
) -> None:
    pipeline.run([catalog], base_dir=catalog)
    products = {f"SKU-{i:05d}" for i in range(12)}
    (catalog / "policies" / "shipping.md").unlink()

    report = pipeline.run([catalog / "policies"], base_dir=catalog)

    assert (report.deleted, report.unchanged, report.kept) == (2, 2, 12)
    assert live_ids(store) == products | {
        "policies/returns.md#returns",
        "policies/returns.md#refunds",
    }
    assert store.catalog_info().sources == {"policies/returns.md": 2, "products.jsonl": 12}


def test_an_upload_replaces_only_the_file_of_its_name(
    pipeline: IngestPipeline, store: ChromaStore, catalog: Path, tmp_path: Path
) -> None:
    pipeline.run([catalog], base_dir=catalog)
    upload = write_products(tmp_path / "upload" / "products.jsonl", [product(i) for i in range(10)])

    report = pipeline.run([upload], base_dir=upload.parent)

    assert (report.deleted, report.unchanged) == (2, 10)
    assert store.catalog_info().sources == {
        "policies/returns.md": 2,
        "policies/shipping.md": 2,
        "products.jsonl": 10,
    }


def test_a_mass_deletion_is_refused_without_confirmation_and_goes_through_with_it(
    pipeline: IngestPipeline, store: ChromaStore, catalog: Path, tmp_path: Path
) -> None:
    pipeline.run([catalog], base_dir=catalog)
    before = live_ids(store)
    upload = write_products(tmp_path / "upload" / "products.jsonl", [product(1)])

    with pytest.raises(DeletionNotConfirmed) as refused:
        pipeline.run([upload], base_dir=upload.parent)

    assert refused.value.http_status == 409 and not refused.value.retryable
    assert refused.value.details == {
        "deleted": 11,
        "live_documents": 16,
        "share": 0.6875,
        "max_delete_share": 0.2,
        "deleted_sources": {"products.jsonl": 11},
    }
    assert "delete 11 of the 16 documents" in refused.value.message
    assert "68.8%" in refused.value.message and "20%" in refused.value.message
    assert store.live_version() == 1 and live_ids(store) == before

    dry = pipeline.run([upload], base_dir=upload.parent, dry_run=True)  # never refused
    assert (dry.deleted, dry.live_documents, dry.needs_confirmation) == (11, 16, True)
    assert store.live_version() == 1

    done = pipeline.run([upload], base_dir=upload.parent, confirm_deletions=True)
    assert done.published and done.deleted == 11 and done.needs_confirmation
    assert live_ids(store) == before - {f"SKU-{i:05d}" for i in range(12) if i != 1}


def test_the_share_allowed_unconfirmed_is_a_setting(
    store: ChromaStore, catalog: Path, tmp_path: Path
) -> None:
    embedder = HashingEmbedder(64)
    IngestPipeline(store, embedder, IngestSettings()).run([catalog], base_dir=catalog)
    (catalog / "policies" / "shipping.md").unlink()  # 2 of 16: 12.5 %
    strict = IngestPipeline(store, embedder, IngestSettings(max_delete_share=0.1))
    with pytest.raises(DeletionNotConfirmed):
        strict.run([catalog], base_dir=catalog)
    assert not strict.run([catalog], base_dir=catalog, dry_run=True).published
    exactly = IngestPipeline(store, embedder, IngestSettings(max_delete_share=0.125))
    assert exactly.run([catalog], base_dir=catalog).deleted == 2  # "more than" the share


def test_append_never_deletes_so_never_asks(
    pipeline: IngestPipeline, store: ChromaStore, catalog: Path, tmp_path: Path
) -> None:
    pipeline.run([catalog], base_dir=catalog)
    upload = write_products(tmp_path / "upload" / "products.jsonl", [product(1, price=9.0)])
    report = pipeline.run([upload], base_dir=upload.parent, append=True)
    assert (report.updated, report.deleted, report.kept, report.needs_confirmation) == (
        1,
        0,
        15,
        False,
    )


def test_a_document_published_through_a_symlink_out_is_dropped_by_the_next_sync(
    pipeline: IngestPipeline, store: ChromaStore, catalog: Path, tmp_path: Path
) -> None:
    # As before the fix: a folder published from the catalog is now a symlink leaving it.
    write_policy(catalog / "outdir" / "secret.md")
    pipeline.run([catalog], base_dir=catalog)
    assert "outdir/secret.md#returns" in live_ids(store)
    shutil.rmtree(catalog / "outdir")
    write_policy(tmp_path / "secret" / "secret.md")
    (catalog / "outdir").symlink_to(tmp_path / "secret", target_is_directory=True)

    report = pipeline.run([catalog], base_dir=catalog, confirm_deletions=True)

    assert [(p.file, p.message) for p in report.failed] == [
        ("outdir", "symlink points outside the catalog directory")
    ]
    assert report.deleted == 2
    assert not any(doc.startswith("outdir/") for doc in live_ids(store))


def test_the_cli_names_and_syncs_from_the_configured_catalog_dir(
    catalog: Path, tmp_path: Path
) -> None:
    settings = Settings(
        chroma=ChromaSettings(path=tmp_path / "chroma", collection="cli"),
        ingest=IngestSettings(catalog_dir=catalog),
    )
    embedder = HashingEmbedder(64)
    ingest_catalog(settings, [catalog], embedder=embedder)
    (catalog / "policies" / "shipping.md").unlink()

    report = ingest_catalog(settings, [catalog / "policies"], embedder=embedder)

    assert (report.deleted, report.kept) == (2, 12)
    info = ChromaStore.open(settings.chroma).catalog_info()
    assert info.sources == {"policies/returns.md": 2, "products.jsonl": 12}


def test_the_cli_root_outside_the_catalog_dir_is_the_folder_given(
    catalog: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    assert choose_catalog_root([catalog / "policies"], catalog) == catalog
    assert choose_catalog_root([catalog], catalog) == catalog
    assert choose_catalog_root([catalog / "products.jsonl"], elsewhere) == catalog
    assert choose_catalog_root([catalog / "policies"], elsewhere) == catalog / "policies"
