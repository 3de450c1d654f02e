"""A conversation's context follows it (issue #13): a fresh context serves a question it covers,
and one on another topic or another SKU extends it, through the real app and Chroma."""

from __future__ import annotations

from typing import Any

from tests.app.conftest import Service
from tests.app.test_app import ask


def context_of(events: list[Any]) -> dict[str, Any]:
    meta: dict[str, Any] = events[0].json()["context"]
    return meta


def source_ids(context: dict[str, Any]) -> list[str]:
    return [source["id"] for source in context["sources"]]


async def test_a_topic_shift_extends_the_context_and_a_follow_up_stays_fresh(
    service: Service,
) -> None:
    first = context_of(await ask(service, context="chat-1", query="How much are the tents?"))
    assert (first["state"], first["extended"]) == ("refreshed", False)
    assert not any(doc.startswith("returns.md") for doc in source_ids(first))

    shifted = context_of(
        await ask(service, context="chat-1", query="Can I return unused items for a refund?")
    )

    assert (shifted["state"], shifted["extended"]) == ("refreshed", True)
    sources = source_ids(shifted)
    assert sources[0].startswith("returns.md")  # retrieved for the new question: first
    assert set(source_ids(first)) & set(sources)  # the earlier topic stays in the context
    follow_up = context_of(
        await ask(service, context="chat-1", query="Can I return unused items within 30 days?")
    )
    assert (follow_up["state"], follow_up["extended"]) == ("fresh", False)
    assert source_ids(follow_up) == sources


async def test_a_question_about_another_sku_is_another_topic(service: Service) -> None:
    first = context_of(await ask(service, context="chat-2", query="Is SKU-00003 in stock?"))
    assert source_ids(first)[0] == "SKU-00003"

    other = context_of(await ask(service, context="chat-2", query="Is sku 00005 in stock?"))

    assert (other["state"], other["extended"]) == ("refreshed", True)
    assert source_ids(other)[0] == "SKU-00005"
    back = context_of(await ask(service, context="chat-2", query="Is SKU-00003 in stock?"))
    assert back["state"] == "fresh"  # both are in the context now


async def test_the_context_stays_bounded(service: Service) -> None:
    service.settings.freshness.max_passages = 6
    extensions = 0
    for index in range(12):
        sku = f"SKU-{index:05d}"
        context = context_of(await ask(service, context="chat-3", query=f"Is {sku} in stock?"))
        assert len(context["sources"]) <= 6
        assert sku in source_ids(context)
        if context["extended"]:
            extensions += 1
            assert source_ids(context)[0] == sku  # retrieved for this question: first

    assert extensions >= 3


async def test_metrics_count_cover_checks_and_extensions(service: Service) -> None:
    await ask(service, context="chat-4", query="Is SKU-00003 in stock?")
    await ask(service, context="chat-4", query="Can I return unused items for a refund?")

    metrics = (await service.client.get("/metrics")).text

    assert "rag_context_extended_total 1.0" in metrics
    assert "rag_context_cover_checks_total" in metrics


async def test_metrics_show_how_the_catalog_snapshot_was_loaded(service: Service) -> None:
    # The first version is loaded while the app starts (awaited), whole.
    metrics = (await service.client.get("/metrics")).text

    assert 'rag_catalog_snapshot_loads_total{kind="whole"} 1.0' in metrics
    assert 'rag_catalog_snapshot_loads_total{kind="changes"} 0.0' in metrics
    passages = len(service.store.records_at(service.store.live_catalog()))
    assert f"rag_catalog_snapshot_passages {float(passages)}" in metrics
    assert "rag_retrieval_dense_only_total 0.0" in metrics
