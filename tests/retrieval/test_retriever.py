"""Retriever in dense mode (``RAG_RETRIEVAL__MODE=dense``, the behaviour before hybrid retrieval):
embedding + search in a thread, threshold, order, time limit, error pass-through."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from rag_service.domain import CatalogInfo, MetadataValue, Passage, Vector
from rag_service.errors import EmbedderUnavailable, InvalidInput, VectorStoreUnavailable
from rag_service.ports import Embedder, PassageSearch
from rag_service.retrieval import DenseSearch, Retriever
from rag_service.settings import RetrievalSettings
from tests.fakes.retrieval import HashingEmbedder, InMemoryPassageSearch


def dense(embedder: Embedder, search: PassageSearch, settings: RetrievalSettings) -> Retriever:
    return Retriever(embedder, DenseSearch(search, settings), settings)


@pytest.fixture
def retrieval_settings() -> RetrievalSettings:
    return RetrievalSettings(mode="dense", top_k=3, min_score=0.2, timeout_s=5.0)


@pytest.fixture
def retriever(
    embedder: HashingEmbedder, store: InMemoryPassageSearch, retrieval_settings: RetrievalSettings
) -> Retriever:
    return dense(embedder, store, retrieval_settings)


async def test_best_first_and_above_threshold(retriever: Retriever) -> None:
    passages = await retriever.retrieve("Is the two person tent waterproof?")

    assert [p.doc_id for p in passages] == ["TNT-00017", "TNT-00018"]
    assert passages[0].score > passages[1].score >= 0.2


async def test_embeds_once_and_searches_once(
    retriever: Retriever, embedder: HashingEmbedder, store: InMemoryPassageSearch
) -> None:
    await retriever.retrieve("hiking boots sizes")

    assert (embedder.calls, embedder.texts_embedded, store.search_calls) == (1, 1, 1)
    assert store.last_top_k == 3


async def test_threshold_drops_everything_weak(
    embedder: HashingEmbedder, store: InMemoryPassageSearch
) -> None:
    strict = dense(embedder, store, RetrievalSettings(top_k=5, min_score=0.8))

    assert await strict.retrieve("hiking boots sizes") == []


async def test_unrelated_question_finds_nothing(retriever: Retriever) -> None:
    assert await retriever.retrieve("What is the return policy for gift cards?") == []


async def test_filters_reach_the_store(retriever: Retriever, store: InMemoryPassageSearch) -> None:
    passages = await retriever.retrieve("waterproof", filters={"category": "boots"}, top_k=5)

    assert [p.doc_id for p in passages] == ["BOT-00003"]
    assert store.last_filters == {"category": "boots"}
    assert store.last_top_k == 5


async def test_empty_filters_mean_no_filter(
    retriever: Retriever, store: InMemoryPassageSearch
) -> None:
    await retriever.retrieve("tent", filters={})

    assert store.last_filters is None


@pytest.mark.parametrize("top_k", [0, -1, 51])
async def test_top_k_out_of_range_is_invalid_input(retriever: Retriever, top_k: int) -> None:
    with pytest.raises(InvalidInput, match="top_k"):
        await retriever.retrieve("tent", top_k=top_k)


async def test_time_limit_raises_vector_store_unavailable(
    embedder: HashingEmbedder, store: InMemoryPassageSearch
) -> None:
    quick = dense(embedder, store, RetrievalSettings(timeout_s=0.05))
    store.gate.close()

    with pytest.raises(VectorStoreUnavailable, match="retrieval timed out"):
        await quick.retrieve("tent")


async def test_store_failure_passes_through(
    retriever: Retriever, store: InMemoryPassageSearch
) -> None:
    store.fail_search = True

    with pytest.raises(VectorStoreUnavailable, match="switched off"):
        await retriever.retrieve("tent")


async def test_embedder_failure_passes_through(
    retriever: Retriever, embedder: HashingEmbedder, store: InMemoryPassageSearch
) -> None:
    embedder.fail = True

    with pytest.raises(EmbedderUnavailable):
        await retriever.retrieve("tent")
    assert store.search_calls == 0


class _BuggySearch:
    """An adapter with a bug: it leaks a foreign exception."""

    def live_version(self) -> int:
        return 1

    def search(
        self, vector: Vector, *, top_k: int, filters: Mapping[str, MetadataValue] | None = None
    ) -> list[Passage]:
        raise KeyError("bug")

    def catalog_info(self) -> CatalogInfo:
        raise NotImplementedError


async def test_unexpected_adapter_error_is_not_disguised(embedder: HashingEmbedder) -> None:
    buggy = dense(embedder, _BuggySearch(), RetrievalSettings())

    with pytest.raises(KeyError):
        await buggy.retrieve("tent")


async def test_results_are_sorted_even_if_the_store_is_not(embedder: HashingEmbedder) -> None:
    store = InMemoryPassageSearch(embedder)
    store.add("A", "tent", vector=[1.0, 0.0])
    store.add("B", "tent", vector=[0.6, 0.8])
    unsorted = _ReversingSearch(store)
    retriever = dense(_FixedEmbedder([1.0, 0.0]), unsorted, RetrievalSettings(min_score=0))

    passages = await retriever.retrieve("anything")

    assert [p.doc_id for p in passages] == ["A", "B"]


class _ReversingSearch:
    def __init__(self, inner: InMemoryPassageSearch) -> None:
        self._inner = inner

    def live_version(self) -> int:
        return self._inner.live_version()

    def search(
        self, vector: Vector, *, top_k: int, filters: Mapping[str, MetadataValue] | None = None
    ) -> list[Passage]:
        return list(reversed(self._inner.search(vector, top_k=top_k, filters=filters)))

    def catalog_info(self) -> CatalogInfo:
        return self._inner.catalog_info()


class _FixedEmbedder:
    def __init__(self, vector: Vector) -> None:
        self._vector = vector

    @property
    def dimension(self) -> int:
        return len(self._vector)

    @property
    def model_name(self) -> str:
        return "fixed"

    def load(self) -> None:
        """Nothing to load."""

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        return [self._vector for _ in texts]
