"""Contract of ChromaStore, run against embedded Chroma and a real Chroma server alike."""

from __future__ import annotations

import pytest

from rag_service.adapters.chroma_store import ChromaStore, RecordSet
from rag_service.domain import LiveState, NewRecord
from rag_service.errors import InvalidInput, VectorStoreUnavailable
from rag_service.settings import ChromaSettings


def record(chunk_id: str, version: int, vector: list[float], **meta: str | int) -> NewRecord:
    return NewRecord(
        record_id=f"{chunk_id}@v{version}",
        chunk_id=chunk_id,
        doc_id=chunk_id.split("#")[0],
        text=f"text of {chunk_id} v{version}",
        embedding=vector,
        metadata={
            "_title": chunk_id,
            "_source": "cat.jsonl",
            "_kind": "product",
            "_hash": f"h{version}",
            "_text_hash": f"t{chunk_id}{version}",
            **meta,
        },
    )


def publish(store: ChromaStore, version: int) -> None:
    store.publish(
        LiveState(
            version=version,
            document_count=1,
            chunk_count=1,
            sources={"a": 1},
            records_collection=store.new_collection_name(1),
        )
    )


@pytest.fixture
def records(store: ChromaStore) -> RecordSet:
    return store.records(store.new_collection_name(1))


def test_empty_store_is_version_zero_and_finds_nothing(store: ChromaStore) -> None:
    assert store.live_version() == 0
    assert store.search([1.0, 0.0, 0.0], top_k=3) == []
    assert store.catalog_info().document_count == 0


def test_staged_records_are_invisible_until_published(
    store: ChromaStore, records: RecordSet
) -> None:
    records.stage(1, [record("A#0", 1, [1.0, 0.0, 0.0], category="tents")])
    assert store.search([1.0, 0.0, 0.0], top_k=3) == []
    publish(store, 1)
    found = store.search([1.0, 0.0, 0.0], top_k=3)
    assert [p.id for p in found] == ["A#0"]
    assert found[0].score == pytest.approx(1.0, abs=1e-3)
    assert found[0].metadata == {"category": "tents"}  # internal fields stay internal
    assert found[0].title == "A#0"


def test_a_retired_record_stays_visible_to_the_old_version_only(
    store: ChromaStore, records: RecordSet
) -> None:
    records.stage(1, [record("A#0", 1, [1.0, 0.0, 0.0])])
    publish(store, 1)
    records.stage(2, [record("A#0", 2, [1.0, 0.1, 0.0])])
    records.retire(2, ["A#0@v1"])
    assert [p.text for p in store.search([1.0, 0.0, 0.0], top_k=5)] == ["text of A#0 v1"]
    publish(store, 2)
    assert [p.text for p in store.search([1.0, 0.0, 0.0], top_k=5)] == ["text of A#0 v2"]
    assert set(records.live_records(2)) == {"A#0"}
    assert records.live_records(2)["A#0"].record_id == "A#0@v2"


def test_recover_undoes_an_unpublished_ingest(store: ChromaStore, records: RecordSet) -> None:
    records.stage(1, [record("A#0", 1, [1.0, 0.0, 0.0])])
    publish(store, 1)
    records.stage(2, [record("B#0", 2, [0.0, 1.0, 0.0])])
    records.retire(2, ["A#0@v1"])
    assert records.recover(1) == 2
    assert records.count() == 1
    records.stage(2, [record("C#0", 2, [0.0, 0.0, 1.0])])  # a re-run can reuse version 2
    records.retire(2, [])
    publish(store, 2)
    assert {p.id for p in store.search([1.0, 1.0, 1.0], top_k=5)} == {"A#0", "C#0"}


def test_garbage_collection_keeps_what_live_and_previous_versions_see(
    store: ChromaStore, records: RecordSet
) -> None:
    records.stage(1, [record("A#0", 1, [1.0, 0.0, 0.0])])
    publish(store, 1)
    for version in (2, 3):
        records.stage(version, [record("A#0", version, [1.0, 0.0, 0.0])])
        records.retire(version, [f"A#0@v{version - 1}"])
        publish(store, version)
        records.collect_garbage(version)
    # v1 (retired at 2) is gone; v2 (retired at 3) is kept for readers still at version 2.
    assert sorted(records.embeddings_of(["A#0@v1", "A#0@v2", "A#0@v3"])) == ["A#0@v2", "A#0@v3"]


def test_metadata_filters_and_top_k(store: ChromaStore, records: RecordSet) -> None:
    records.stage(
        1,
        [
            record("A#0", 1, [1.0, 0.0, 0.0], category="tents"),
            record("B#0", 1, [0.9, 0.1, 0.0], category="boots"),
            record("C#0", 1, [0.8, 0.2, 0.0], category="tents"),
        ],
    )
    publish(store, 1)
    assert [p.id for p in store.search([1.0, 0.0, 0.0], top_k=1)] == ["A#0"]
    tents = store.search([1.0, 0.0, 0.0], top_k=5, filters={"category": "tents"})
    assert [p.id for p in tents] == ["A#0", "C#0"]
    assert store.search([1.0, 0.0, 0.0], top_k=5, filters={"category": "none"}) == []


def test_reserved_filter_keys_are_refused(store: ChromaStore, records: RecordSet) -> None:
    records.stage(1, [record("A#0", 1, [1.0, 0.0, 0.0])])
    publish(store, 1)
    with pytest.raises(InvalidInput, match="reserved"):
        store.search([1.0, 0.0, 0.0], top_k=1, filters={"_v_from": 0})


def test_catalog_info_reports_the_published_state(store: ChromaStore) -> None:
    store.publish(
        LiveState(
            version=4, document_count=7, chunk_count=9, sources={"p.jsonl": 9}, embedding_model="m"
        )
    )
    info = store.catalog_info()
    assert (info.version, info.document_count, info.chunk_count) == (4, 7, 9)
    assert info.sources == {"p.jsonl": 9}
    assert info.embedding_model == "m"
    assert info.updated_at


def test_unreachable_server_is_a_vector_store_error() -> None:
    from tests.conftest import free_port

    with pytest.raises(VectorStoreUnavailable, match="vector store failed"):
        ChromaStore.open(ChromaSettings(host="127.0.0.1", port=free_port()))


def test_bad_embedding_dimension_is_a_vector_store_error(
    store: ChromaStore, records: RecordSet
) -> None:
    records.stage(1, [record("A#0", 1, [1.0, 0.0, 0.0])])
    publish(store, 1)
    with pytest.raises(VectorStoreUnavailable):
        store.search([1.0, 0.0], top_k=1)
