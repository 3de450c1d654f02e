"""Fixtures for retrieval tests: a small seeded catalog, fakes, a manual clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from rag_service.adapters.tantivy_lexical_index import TantivyLexicalIndex
from rag_service.retrieval import ContextService, Retriever, passage_finder
from rag_service.settings import FreshnessSettings, RetrievalSettings
from tests.fakes.retrieval import Gate, HashingEmbedder, InMemoryPassageSearch, ManualClock

FALLBACK_TEXT = "Our shop sells outdoor gear. Opening hours: Mon-Fri 9-18."

CATALOG = [
    (
        "TNT-00017",
        "Trail tent for two",
        "A two person trekking tent. The tent weighs 1.9 kg and is waterproof to 3000 mm.",
        "tents",
    ),
    (
        "TNT-00018",
        "Family tent for six",
        "A six person family tent with two rooms. The tent is waterproof to 2000 mm.",
        "tents",
    ),
    (
        "BOT-00003",
        "Alpine hiking boots",
        "Leather hiking boots with Vibram soles, sizes 38 to 47. The boots are waterproof.",
        "boots",
    ),
    (
        "BOT-00004",
        "Trail running shoes",
        "Light trail running shoes with a grippy sole, sizes 36 to 46.",
        "boots",
    ),
    (
        "SLP-00002",
        "Down sleeping bag",
        "A down sleeping bag for temperatures down to minus 10 degrees, weight 900 g.",
        "sleeping",
    ),
]


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll ``condition`` (cheaply) until it holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.001)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


# Async fixtures, so the gates open before the event loop waits for its worker threads.
@pytest.fixture
async def embedder() -> AsyncIterator[HashingEmbedder]:
    fake = HashingEmbedder()
    yield fake
    fake.gate.open()


class VersionGatedSearch(InMemoryPassageSearch):
    """The shared fake with a second gate, on ``live_version``, to hold a version check."""

    def __init__(self, embedder: HashingEmbedder) -> None:
        super().__init__(embedder)
        self.version_gate = Gate()
        self.version_error: Exception | None = None  # raised (once) instead of answering

    def live_version(self) -> int:
        self.version_gate.wait()
        error, self.version_error = self.version_error, None
        if error is not None:
            raise error
        return super().live_version()


@pytest.fixture
async def store(embedder: HashingEmbedder) -> AsyncIterator[VersionGatedSearch]:
    fake = VersionGatedSearch(embedder)
    for doc_id, title, text, category in CATALOG:
        fake.add(doc_id, text, title=title, metadata={"category": category})
    yield fake
    fake.gate.open()
    fake.version_gate.open()


@pytest.fixture
def retrieval_settings() -> RetrievalSettings:
    return RetrievalSettings(top_k=3, min_score=0.2, timeout_s=5.0)


@pytest.fixture
def retriever(
    embedder: HashingEmbedder, store: InMemoryPassageSearch, retrieval_settings: RetrievalSettings
) -> Retriever:
    finder = passage_finder(store, retrieval_settings, TantivyLexicalIndex)
    return Retriever(embedder, finder, retrieval_settings)


ServiceFactory = Callable[..., Awaitable[ContextService]]


@pytest.fixture
async def make_service(
    retriever: Retriever, store: InMemoryPassageSearch, clock: ManualClock
) -> AsyncIterator[ServiceFactory]:
    """Builds ContextServices over the shared fakes; closes them at teardown.

    Like the app at start-up, a service learns the catalog version once (``learn_version``); it
    does not run the background checks (``start``), so a test decides when the store is asked.
    """
    built: list[ContextService] = []

    async def factory(
        settings: FreshnessSettings | None = None,
        *,
        retriever_: Retriever | None = None,
        version_check_interval_s: float = 1.0,
        version_check_timeout_s: float = 2.0,
        learn_version: bool = True,
    ) -> ContextService:
        service = ContextService(
            retriever_ or retriever,
            store,
            settings or FreshnessSettings(),
            FALLBACK_TEXT,
            clock=clock,
            version_check_interval_s=version_check_interval_s,
            version_check_timeout_s=version_check_timeout_s,
        )
        built.append(service)
        if learn_version:
            await service.check_catalog_version()
        return service

    yield factory
    for service in built:
        await service.aclose()


@pytest.fixture
async def service(make_service: ServiceFactory) -> ContextService:
    return await make_service()
