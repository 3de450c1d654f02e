"""Hybrid retrieval over the fake store and a real tantivy index: exact identifiers first, dense
and lexical fused by reciprocal rank, the relevance threshold, filters, dense-only by setting."""

from __future__ import annotations

import pytest

from rag_service.adapters.tantivy_lexical_index import TantivyLexicalIndex
from rag_service.errors import InvalidInput, VectorStoreUnavailable
from rag_service.retrieval import DenseSearch, HybridSearch, Retriever, passage_finder
from rag_service.retrieval.hybrid import reciprocal_rank_fusion
from rag_service.settings import RetrievalSettings
from tests.fakes.retrieval import HashingEmbedder, InMemoryPassageSearch

SETTINGS = RetrievalSettings(top_k=3, min_score=0.2)


@pytest.fixture
def shop(embedder: HashingEmbedder) -> InMemoryPassageSearch:
    store = InMemoryPassageSearch(embedder)
    store.add("K-7416-F", "SKU: K-7416-F. Leather upper, stiff sole.", title="Alpine boot")
    store.add("K-7416-G", "SKU: K-7416-G. Leather upper, soft sole.", title="Alpine boot light")
    store.add("K-7417-F", "SKU: K-7417-F. Synthetic upper.", title="Trail shoe")
    store.add("TNT-1", "A two person tent, waterproof to 3000 mm.", title="Trail tent")
    store.add("RET", "You may return any item within 30 days.", title="Returns")
    store.add("ZIG", "The Zigzag frame is a patented aluminium design.", title="Zigzag frame")
    return store


def hybrid(
    embedder: HashingEmbedder, store: InMemoryPassageSearch, **settings: object
) -> Retriever:
    chosen = SETTINGS.model_copy(update=settings)
    return Retriever(embedder, passage_finder(store, chosen, TantivyLexicalIndex), chosen)


@pytest.mark.parametrize("question", ["is k-7416-f in stock?", "Is K 7416 F in stock?", "K7416F"])
async def test_a_sku_in_any_spelling_ranks_its_product_first(
    embedder: HashingEmbedder, shop: InMemoryPassageSearch, question: str
) -> None:
    passages = await hybrid(embedder, shop).retrieve(question)

    assert passages[0].doc_id == "K-7416-F"
    # Named by SKU, it is kept whatever its similarity; it carries the similarity as score.
    assert passages[0].vector is not None


async def test_an_exact_match_is_kept_below_the_relevance_threshold(
    embedder: HashingEmbedder, shop: InMemoryPassageSearch
) -> None:
    passages = await hybrid(embedder, shop, min_score=0.99).retrieve("k 7416 f?")

    assert [p.doc_id for p in passages] == ["K-7416-F"]
    assert passages[0].score < 0.99


async def test_a_word_only_the_lexical_index_knows_is_found() -> None:
    # A two-dimensional embedder sees almost nothing: the dense ranking is noise (and may miss
    # the passage altogether); BM25 finds the one passage that says "zigzag".
    blind = HashingEmbedder(dimension=2)
    store = InMemoryPassageSearch(blind)
    for i in range(30):
        store.add(f"P-{i}", f"Plain product number {i} for the trail.", title=f"Product {i}")
    store.add("ZIG", "The Zigzag frame is a patented aluminium design.", title="Frame")

    # Equal weights: BM25's first ranks with the dense ranking's first (ties keep dense first).
    passages = await hybrid(blind, store, min_score=-1, lexical_weight=1.0).retrieve("zigzag frame")
    dense_only = await hybrid(blind, store, min_score=-1, lexical_weight=0.0).retrieve("zigzag")

    assert "ZIG" in [p.doc_id for p in passages]
    assert "ZIG" not in [p.doc_id for p in dense_only]  # the ranking it came from


async def test_without_the_lexical_ranking_and_identifiers_hybrid_is_dense(
    embedder: HashingEmbedder, shop: InMemoryPassageSearch
) -> None:
    question = "two person tent waterproof"
    fused = await hybrid(embedder, shop, lexical_weight=0.0).retrieve(question)
    dense = await Retriever(embedder, DenseSearch(shop, SETTINGS), SETTINGS).retrieve(question)

    assert [(p.id, p.score) for p in fused] == [(p.id, round(p.score, 4)) for p in dense]


async def test_filters_hold_for_every_ranking(
    embedder: HashingEmbedder, shop: InMemoryPassageSearch
) -> None:
    shop.add("K-9000-A", "SKU: K-9000-A. Leather upper.", title="Alpine boot", metadata={"c": "x"})
    retriever = hybrid(embedder, shop, min_score=-1)

    named = await retriever.retrieve("K-7416-F leather", filters={"c": "x"})

    assert [p.doc_id for p in named] == ["K-9000-A"]
    assert shop.last_filters == {"c": "x"}  # the dense search was filtered by the store


async def test_a_reserved_filter_key_is_invalid_input(
    embedder: HashingEmbedder, shop: InMemoryPassageSearch
) -> None:
    with pytest.raises(InvalidInput, match="reserved"):
        await hybrid(embedder, shop).retrieve("tent", filters={"_v_from": 1})


async def test_a_changed_catalog_is_loaded_again(
    embedder: HashingEmbedder, shop: InMemoryPassageSearch
) -> None:
    retriever = hybrid(embedder, shop)
    assert (await retriever.retrieve("X-1234-Z"))[:1] == []

    shop.add("X-1234-Z", "SKU: X-1234-Z. A new stove.", title="Stove")

    assert [p.doc_id for p in await retriever.retrieve("x 1234 z")][:1] == ["X-1234-Z"]


async def test_named_documents_come_from_the_loaded_catalog_without_a_store_call(
    embedder: HashingEmbedder, shop: InMemoryPassageSearch
) -> None:
    retriever = hybrid(embedder, shop)
    assert retriever.named_documents("k7416f") == []  # nothing loaded yet

    await retriever.prepare()
    calls = shop.search_calls

    assert retriever.named_documents("is k7416f in stock") == ["K-7416-F"]
    assert shop.search_calls == calls


def test_dense_mode_is_chosen_by_the_setting(shop: InMemoryPassageSearch) -> None:
    dense = RetrievalSettings(mode="dense")

    assert isinstance(passage_finder(shop, dense, TantivyLexicalIndex), DenseSearch)
    assert isinstance(passage_finder(shop, SETTINGS, TantivyLexicalIndex), HybridSearch)


def test_reciprocal_rank_fusion_sums_weighted_reciprocal_ranks() -> None:
    dense, lexical = ["a", "b", "c"], ["c", "d", "a"]

    # a: 1/61 + 1/63, c: 1/63 + 1/61 (tie: first seen wins), b: 1/62, d: 1/62
    assert reciprocal_rank_fusion([(dense, 1.0), (lexical, 1.0)], k=60) == ["a", "c", "b", "d"]
    # Weighted towards the lexical ranking, its first item leads.
    assert reciprocal_rank_fusion([(dense, 1.0), (lexical, 3.0)], k=60)[0] == "c"
    # A zero weight leaves that ranking out.
    assert reciprocal_rank_fusion([(dense, 1.0), (lexical, 0.0)], k=60) == dense


async def test_a_store_down_while_loading_the_catalog_fails_the_retrieval_then_recovers(
    embedder: HashingEmbedder, shop: InMemoryPassageSearch
) -> None:
    retriever = hybrid(embedder, shop)
    shop.fail_records = True

    with pytest.raises(VectorStoreUnavailable):  # an outage: stale or fallback context upstream
        await retriever.retrieve("k 7416 f")

    shop.fail_records = False
    assert [p.doc_id for p in await retriever.retrieve("k 7416 f")][:1] == ["K-7416-F"]
