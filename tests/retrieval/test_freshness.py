"""ContextService: fresh hits, expiry, catalog versions, refresh, invalidation, fallbacks."""

from __future__ import annotations

import asyncio

import pytest

from rag_service.adapters.tantivy_lexical_index import TantivyLexicalIndex
from rag_service.domain import ContextState
from rag_service.errors import InvalidInput
from rag_service.ports import ContextResolver
from rag_service.retrieval import ContextService, Retriever, passage_finder
from rag_service.settings import FreshnessSettings, RetrievalSettings
from tests.fakes.retrieval import HashingEmbedder, InMemoryPassageSearch, ManualClock
from tests.retrieval.conftest import (
    FALLBACK_TEXT,
    ServiceFactory,
    VersionGatedSearch,
    wait_until,
)

TENT_QUESTION = "Is the two person tent waterproof?"
BOOTS_QUESTION = "hiking boots sizes"
UNRELATED_QUESTION = "What is the return policy for gift cards?"


def doc_ids(passages: tuple[object, ...]) -> list[str]:
    return [p.doc_id for p in passages]  # type: ignore[attr-defined]


async def test_first_request_retrieves(service: ContextService) -> None:
    resolved = await service.resolve("c1", TENT_QUESTION)

    assert resolved.state is ContextState.refreshed
    assert resolved.context_id == "c1"
    assert doc_ids(resolved.passages) == ["TNT-00017", "TNT-00018"]
    assert resolved.age_s == 0.0
    assert resolved.catalog_version == 1
    assert resolved.fallback_text is None


async def test_fresh_hit_neither_embeds_nor_searches(
    service: ContextService,
    embedder: HashingEmbedder,
    store: InMemoryPassageSearch,
    clock: ManualClock,
) -> None:
    first = await service.resolve("c1", TENT_QUESTION)
    clock.advance(120)

    second = await service.resolve("c1", TENT_QUESTION)  # the same question: nothing to judge

    assert second.state is ContextState.fresh
    assert second.age_s == pytest.approx(120)
    assert second.passages == first.passages
    assert (embedder.calls, store.search_calls) == (1, 1)
    stats = service.stats()
    assert (stats.hits, stats.misses, stats.refreshes, stats.retrievals) == (1, 1, 1, 1)


async def test_a_covered_follow_up_keeps_the_context(
    service: ContextService,
    embedder: HashingEmbedder,
    store: InMemoryPassageSearch,
    clock: ManualClock,
) -> None:
    first = await service.resolve("c1", TENT_QUESTION)
    clock.advance(120)

    follow_up = await service.resolve("c1", "How heavy is the two person trekking tent?")

    assert (follow_up.state, follow_up.extended) == (ContextState.fresh, False)
    assert follow_up.passages == first.passages
    assert follow_up.age_s == pytest.approx(120)  # the context was kept, not retrieved again
    # Judging it took one embedding and one search: the best the catalog has for the question.
    assert (embedder.calls, store.search_calls) == (2, 2)
    stats = service.stats()
    assert (stats.hits, stats.cover_checks, stats.extended, stats.retrievals) == (1, 1, 0, 2)


async def test_a_topic_shift_is_extended_with_the_passages_the_judgement_found(
    service: ContextService, embedder: HashingEmbedder, store: InMemoryPassageSearch
) -> None:
    first = await service.resolve("c1", TENT_QUESTION)

    shifted = await service.resolve("c1", BOOTS_QUESTION)

    assert (shifted.state, shifted.extended) == (ContextState.refreshed, True)
    assert doc_ids(shifted.passages)[0] == "BOT-00003"  # retrieved for the question: first
    assert set(doc_ids(first.passages)) <= set(doc_ids(shifted.passages))  # the earlier kept
    assert (embedder.calls, store.search_calls) == (2, 2)  # nothing searched twice
    assert service.stats().extended == 1


async def test_a_margin_of_two_reuses_a_fresh_context_for_anything(
    make_service: ServiceFactory, embedder: HashingEmbedder
) -> None:
    service = await make_service(settings=FreshnessSettings(cover_margin=2))
    first = await service.resolve("c1", TENT_QUESTION)

    other = await service.resolve("c1", BOOTS_QUESTION)

    assert (other.state, other.passages) == (ContextState.fresh, first.passages)
    assert embedder.calls == 1


async def test_a_failing_store_while_judging_keeps_the_context(
    service: ContextService, store: InMemoryPassageSearch
) -> None:
    first = await service.resolve("c1", TENT_QUESTION)
    store.fail_search = True

    other = await service.resolve("c1", BOOTS_QUESTION)

    assert (other.state, other.passages) == (ContextState.fresh, first.passages)


async def test_still_fresh_just_before_the_ttl(service: ContextService, clock: ManualClock) -> None:
    await service.resolve("c1", TENT_QUESTION)
    clock.advance(299.9)

    resolved = await service.resolve("c1", TENT_QUESTION)

    assert resolved.state is ContextState.fresh


async def test_expired_after_the_ttl(
    service: ContextService, clock: ManualClock, store: InMemoryPassageSearch
) -> None:
    await service.resolve("c1", TENT_QUESTION)
    clock.advance(300.5)

    resolved = await service.resolve("c1", BOOTS_QUESTION)

    assert resolved.state is ContextState.refreshed
    assert resolved.age_s == 0.0
    # Re-retrieved with the *current* question.
    assert doc_ids(resolved.passages) == ["BOT-00003"]
    assert service.stats().retrievals == 2
    assert store.search_calls == 2


async def test_ttl_comes_from_settings(make_service: ServiceFactory, clock: ManualClock) -> None:
    service = await make_service(FreshnessSettings(ttl_seconds=10))
    await service.resolve("c1", TENT_QUESTION)
    clock.advance(10.5)

    assert (await service.resolve("c1", TENT_QUESTION)).state is ContextState.refreshed


async def test_new_catalog_version_makes_old_contexts_stale(
    service: ContextService, store: InMemoryPassageSearch
) -> None:
    await service.resolve("c1", TENT_QUESTION)
    await service.resolve("c2", BOOTS_QUESTION)
    store.bump_version()

    assert await service.check_catalog_version() == 2  # what the background task runs
    first = await service.resolve("c1", TENT_QUESTION)
    second = await service.resolve("c2", BOOTS_QUESTION)

    assert (first.state, first.catalog_version) == (ContextState.refreshed, 2)
    assert (second.state, second.catalog_version) == (ContextState.refreshed, 2)
    assert service.stats().retrievals == 4


async def test_a_version_change_is_noticed_only_by_a_check(
    service: ContextService, store: InMemoryPassageSearch, clock: ManualClock
) -> None:
    await service.resolve("c1", TENT_QUESTION)
    store.bump_version()
    clock.advance(60)

    resolved = await service.resolve("c1", TENT_QUESTION)

    assert (resolved.state, resolved.catalog_version) == (ContextState.fresh, 1)
    assert service.catalog_version == 1


async def test_requests_never_ask_the_store_for_the_version(
    service: ContextService, store: InMemoryPassageSearch, clock: ManualClock
) -> None:
    assert store.live_version_calls == 1  # learned once, as at start-up
    for i in range(50):
        await service.resolve(f"c{i % 5}", TENT_QUESTION)
        clock.advance(0.5)

    assert store.live_version_calls == 1
    assert service.stats().version_checks == 1


async def test_a_published_version_counts_at_once_without_asking_the_store(
    service: ContextService, store: InMemoryPassageSearch
) -> None:
    await service.resolve("c1", TENT_QUESTION)
    store.bump_version()

    service.catalog_published(2)
    resolved = await service.resolve("c1", TENT_QUESTION)

    assert (resolved.state, resolved.catalog_version) == (ContextState.refreshed, 2)
    assert store.live_version_calls == 1


async def test_failed_version_check_keeps_the_cached_version(
    service: ContextService, store: InMemoryPassageSearch
) -> None:
    await service.resolve("c1", TENT_QUESTION)
    store.fail_live_version = True

    assert await service.check_catalog_version() == 1
    resolved = await service.resolve("c1", TENT_QUESTION)

    assert (resolved.state, resolved.catalog_version) == (ContextState.fresh, 1)
    stats = service.stats()
    assert (stats.version_checks, stats.version_check_failures) == (2, 1)


async def test_a_hanging_version_check_does_not_hold_up_requests(
    service: ContextService, store: VersionGatedSearch
) -> None:
    await service.resolve("c1", TENT_QUESTION)
    store.version_gate.close()
    check = asyncio.create_task(service.check_catalog_version())
    await wait_until(lambda: store.version_gate.waiting == 1)

    # Completes without yielding to the event loop: nothing on the way awaits the store.
    coroutine = service.resolve("c1", TENT_QUESTION)
    with pytest.raises(StopIteration) as done:
        coroutine.send(None)

    assert done.value.value.state is ContextState.fresh
    store.version_gate.open()
    assert await check == 1


async def test_forced_refresh_retrieves_with_the_new_question(
    service: ContextService, embedder: HashingEmbedder
) -> None:
    await service.resolve("c1", TENT_QUESTION)

    resolved = await service.resolve("c1", BOOTS_QUESTION, refresh=True)

    assert resolved.state is ContextState.refreshed
    assert doc_ids(resolved.passages) == ["BOT-00003"]
    assert embedder.calls == 2
    # The refreshed context is what is cached now.
    again = await service.resolve("c1", BOOTS_QUESTION)
    assert (again.state, doc_ids(again.passages)) == (ContextState.fresh, ["BOT-00003"])


async def test_other_filters_need_another_retrieval(
    service: ContextService, store: InMemoryPassageSearch
) -> None:
    await service.resolve("c1", "waterproof", filters={"category": "boots"})

    same = await service.resolve("c1", "waterproof", filters={"category": "boots"})
    other = await service.resolve("c1", "waterproof", filters={"category": "tents"})

    assert same.state is ContextState.fresh
    assert other.state is ContextState.refreshed
    assert doc_ids(other.passages) == ["TNT-00017", "TNT-00018"]
    assert store.last_filters == {"category": "tents"}


async def test_filter_order_does_not_matter(
    service: ContextService, store: InMemoryPassageSearch
) -> None:
    store.add("TNT-00020", "An ultralight tent.", metadata={"category": "tents", "in_stock": True})
    first = await service.resolve("c1", "tent", filters={"category": "tents", "in_stock": True})

    again = await service.resolve("c1", "tent", filters={"in_stock": True, "category": "tents"})

    assert doc_ids(first.passages) == ["TNT-00020"]
    assert again.state is ContextState.fresh


async def test_other_top_k_needs_another_retrieval(
    service: ContextService, store: InMemoryPassageSearch
) -> None:
    await service.resolve("c1", TENT_QUESTION)

    default_again = await service.resolve("c1", TENT_QUESTION, top_k=3)
    other = await service.resolve("c1", TENT_QUESTION, top_k=1)

    assert default_again.state is ContextState.fresh  # 3 is the configured default
    assert other.state is ContextState.refreshed
    assert doc_ids(other.passages) == ["TNT-00017"]
    assert service.stats().retrievals == 2


async def test_bad_top_k_raises_invalid_input(service: ContextService) -> None:
    with pytest.raises(InvalidInput):
        await service.resolve("c1", TENT_QUESTION, top_k=0)


async def test_admin_invalidation(service: ContextService) -> None:
    await service.resolve("c1", TENT_QUESTION)

    assert service.invalidate("c1") is True
    assert service.invalidate("c1") is False
    assert service.invalidate("never-seen") is False
    assert (await service.resolve("c1", TENT_QUESTION)).state is ContextState.refreshed


async def test_invalidated_context_still_serves_as_stale(
    service: ContextService, store: InMemoryPassageSearch, clock: ManualClock
) -> None:
    first = await service.resolve("c1", TENT_QUESTION)
    service.invalidate("c1")
    store.fail_search = True
    clock.advance(7)

    resolved = await service.resolve("c1", TENT_QUESTION)

    assert resolved.state is ContextState.stale
    assert resolved.passages == first.passages
    assert resolved.age_s == pytest.approx(7)


async def test_invalidate_all(service: ContextService, store: InMemoryPassageSearch) -> None:
    await service.resolve("c1", TENT_QUESTION)
    await service.resolve("c2", BOOTS_QUESTION)

    assert service.invalidate_all() == 2
    assert service.stats().entries == 0
    assert (await service.resolve("c1", TENT_QUESTION)).state is ContextState.refreshed


async def test_invalidate_all_has_the_version_checked_now(
    make_service: ServiceFactory, store: InMemoryPassageSearch
) -> None:
    service = await make_service(version_check_interval_s=3600, learn_version=False)
    await service.start()
    assert store.live_version_calls == 1
    store.bump_version()

    service.invalidate_all()

    await wait_until(lambda: service.catalog_version == 2)
    assert store.live_version_calls == 2


async def test_store_down_serves_the_last_known_context_as_stale(
    service: ContextService, store: InMemoryPassageSearch, clock: ManualClock
) -> None:
    first = await service.resolve("c1", TENT_QUESTION)
    clock.advance(301)
    store.fail_search = True

    resolved = await service.resolve("c1", BOOTS_QUESTION)

    assert resolved.state is ContextState.stale
    assert resolved.passages == first.passages
    assert resolved.age_s == pytest.approx(301)
    assert resolved.catalog_version == 1
    stats = service.stats()
    assert (stats.stale_served, stats.retrieval_failures) == (1, 1)


async def test_embedder_down_serves_stale_too(
    service: ContextService, embedder: HashingEmbedder, clock: ManualClock
) -> None:
    await service.resolve("c1", TENT_QUESTION)
    clock.advance(400)
    embedder.fail = True

    assert (await service.resolve("c1", TENT_QUESTION)).state is ContextState.stale


async def test_stale_context_has_a_maximum_age(
    make_service: ServiceFactory, store: InMemoryPassageSearch, clock: ManualClock
) -> None:
    service = await make_service(FreshnessSettings(stale_max_age_s=600))
    await service.resolve("c1", TENT_QUESTION)
    clock.advance(601)
    store.fail_search = True

    resolved = await service.resolve("c1", TENT_QUESTION)

    assert resolved.state is ContextState.fallback
    assert service.stats().last_known_entries == 0


async def test_store_down_without_history_serves_the_fallback(
    service: ContextService, store: InMemoryPassageSearch
) -> None:
    store.fail_search = True

    resolved = await service.resolve("c1", TENT_QUESTION)

    assert resolved.state is ContextState.fallback
    assert resolved.passages == ()
    assert resolved.fallback_text == FALLBACK_TEXT
    assert resolved.catalog_version == 1  # the live version, known from the version check
    assert resolved.age_s == 0.0


async def test_fallback_version_is_zero_when_nothing_is_known(
    make_service: ServiceFactory, store: InMemoryPassageSearch
) -> None:
    store.fail_search = True
    store.fail_live_version = True
    service = await make_service()

    resolved = await service.resolve("c1", TENT_QUESTION)

    assert (resolved.state, resolved.catalog_version) == (ContextState.fallback, 0)


async def test_timeout_serves_the_fallback(
    make_service: ServiceFactory, embedder: HashingEmbedder, store: InMemoryPassageSearch
) -> None:
    settings = RetrievalSettings(timeout_s=0.05)
    quick = Retriever(embedder, passage_finder(store, settings, TantivyLexicalIndex), settings)
    service = await make_service(retriever_=quick)
    store.gate.close()

    resolved = await service.resolve("c1", TENT_QUESTION)

    assert resolved.state is ContextState.fallback
    assert service.stats().retrieval_failures == 1


async def test_failure_is_remembered_briefly_then_retried(
    service: ContextService, store: InMemoryPassageSearch, clock: ManualClock
) -> None:
    store.fail_search = True
    await service.resolve("c1", TENT_QUESTION)

    again = await service.resolve("c1", TENT_QUESTION, refresh=True)
    assert again.state is ContextState.fallback
    assert store.search_calls == 1  # the negative cache spared the store
    assert service.stats().skipped_after_failure == 1

    store.fail_search = False
    clock.advance(2.1)
    recovered = await service.resolve("c1", TENT_QUESTION)
    assert recovered.state is ContextState.refreshed
    assert store.search_calls == 2


async def test_negative_cache_is_per_context(
    service: ContextService, store: InMemoryPassageSearch
) -> None:
    store.fail_search = True
    await service.resolve("c1", TENT_QUESTION)
    store.fail_search = False

    assert (await service.resolve("c2", TENT_QUESTION)).state is ContextState.refreshed


async def test_invalidate_clears_the_negative_cache(
    service: ContextService, store: InMemoryPassageSearch
) -> None:
    store.fail_search = True
    await service.resolve("c1", TENT_QUESTION)
    store.fail_search = False

    service.invalidate("c1")

    assert (await service.resolve("c1", TENT_QUESTION)).state is ContextState.refreshed


async def test_failed_retrieval_is_not_cached_as_fresh(
    service: ContextService, store: InMemoryPassageSearch, clock: ManualClock
) -> None:
    await service.resolve("c1", TENT_QUESTION)
    clock.advance(301)
    store.fail_search = True
    await service.resolve("c1", TENT_QUESTION)  # stale
    clock.advance(2.1)

    # Still failing: no fresh entry was made from the failure, so it is tried (and fails) again.
    assert (await service.resolve("c1", TENT_QUESTION)).state is ContextState.stale
    assert store.search_calls == 3


async def test_nothing_relevant_serves_the_fallback_and_is_not_cached(
    service: ContextService, store: InMemoryPassageSearch
) -> None:
    first = await service.resolve("c1", UNRELATED_QUESTION)

    assert first.state is ContextState.fallback
    assert first.fallback_text == FALLBACK_TEXT
    # The next question of the conversation is retrieved again, and may find something.
    second = await service.resolve("c1", TENT_QUESTION)
    assert second.state is ContextState.refreshed
    assert store.search_calls == 2
    assert service.stats().fallback_served == 1


async def test_nothing_relevant_does_not_replace_the_last_known_context(
    service: ContextService, store: InMemoryPassageSearch, clock: ManualClock
) -> None:
    first = await service.resolve("c1", TENT_QUESTION)
    clock.advance(301)
    await service.resolve("c1", UNRELATED_QUESTION)
    clock.advance(3)
    store.fail_search = True

    resolved = await service.resolve("c1", TENT_QUESTION)

    assert (resolved.state, resolved.passages) == (ContextState.stale, first.passages)


async def test_cache_size_is_bounded(
    make_service: ServiceFactory, store: InMemoryPassageSearch
) -> None:
    service = await make_service(FreshnessSettings(max_entries=2))
    await service.resolve("a", TENT_QUESTION)
    await service.resolve("b", TENT_QUESTION)
    await service.resolve("c", TENT_QUESTION)

    stats = service.stats()
    assert (stats.entries, stats.last_known_entries) == (2, 2)
    assert (await service.resolve("c", TENT_QUESTION)).state is ContextState.fresh
    assert (await service.resolve("a", TENT_QUESTION)).state is ContextState.refreshed


async def test_stats_add_up(service: ContextService, store: InMemoryPassageSearch) -> None:
    await service.resolve("c1", TENT_QUESTION)  # refreshed
    await service.resolve("c1", TENT_QUESTION)  # fresh
    await service.resolve("c2", UNRELATED_QUESTION)  # fallback
    store.fail_search = True
    service.invalidate("c1")
    await service.resolve("c1", TENT_QUESTION)  # stale

    stats = service.stats()
    assert (stats.hits, stats.misses) == (1, 3)
    assert (stats.refreshes, stats.fallback_served, stats.stale_served) == (1, 1, 1)
    assert (stats.retrievals, stats.retrieval_failures, stats.in_flight) == (3, 1, 0)


async def test_context_service_implements_the_port(service: ContextService) -> None:
    resolver: ContextResolver = service  # checked by mypy

    assert resolver.invalidate("nothing") is False
