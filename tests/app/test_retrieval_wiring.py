"""The app's retrieval wiring: background catalog-version checks and shared system prompts."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ingest.pipeline import IngestPipeline
from rag_service.retrieval import ContextService
from rag_service.settings import IngestSettings
from tests.app.conftest import Service, app_settings, running_service
from tests.app.test_app import ask
from tests.ingest.catalogs import product, write_products
from tests.retrieval.conftest import wait_until


def contexts_of(service: Service) -> ContextService:
    resolver = service.app.state.stream_deps.resolver
    assert isinstance(resolver, ContextService)
    return resolver


async def test_the_version_is_known_before_the_first_request(service: Service) -> None:
    contexts = contexts_of(service)

    assert (contexts.catalog_version, contexts.watching_catalog) == (1, True)


async def test_an_ingest_by_another_process_is_noticed_in_the_background(service: Service) -> None:
    await ask(service)
    catalog = service.settings.ingest.catalog_dir / "products.jsonl"
    write_products(catalog, [product(i) for i in range(12)] + [product(99)])
    pipeline = IngestPipeline(service.store, service.embedder, IngestSettings())
    # Not through /admin/ingest: only the background check can learn about this one.
    report = await asyncio.to_thread(pipeline.run, [service.settings.ingest.catalog_dir])
    assert (report.published, report.version_after) == (True, 2)

    await wait_until(lambda: contexts_of(service).catalog_version == 2)

    after = (await ask(service))[0].json()["context"]
    assert (after["state"], after["catalog_version"]) == ("refreshed", 2)


async def test_streams_on_one_context_share_the_system_message(service: Service) -> None:
    for _ in range(3):
        await ask(service, context="shared-ctx")
    earlier = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    await ask(service, context="shared-ctx", messages=earlier)

    systems = [request.messages[0] for request in service.upstream.requests]
    assert len(systems) == 4
    assert all(system is systems[0] for system in systems)
    assert [m.content for m in service.upstream.requests[-1].messages[1:3]] == ["Hi", "Hello!"]


async def test_shutdown_stops_the_background_checks(tmp_path: Path) -> None:
    async with running_service(app_settings(tmp_path)) as service:
        contexts = contexts_of(service)
        assert contexts.watching_catalog

    assert not contexts.watching_catalog


async def test_the_check_interval_comes_from_the_settings(tmp_path: Path) -> None:
    """RAG_FRESHNESS__CATALOG_CHECK_INTERVAL_S paces the background checks."""
    settings = app_settings(tmp_path)
    settings.freshness.catalog_check_interval_s = 0.02

    async with running_service(settings) as service:
        watch = contexts_of(service)._versions  # the watch the app built
        first = watch.checks
        # Ten more checks take ~0.2 s at 20 ms; at the default 1 s they would take 10 s. The
        # bound sits far from both, so a busy machine does not decide the outcome.
        await wait_until(lambda: watch.checks >= first + 10, timeout_s=8.0)
