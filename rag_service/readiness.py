"""Readiness checks of the service's dependencies, for ``GET /readyz``."""

from __future__ import annotations

import asyncio
from typing import Any

from rag_service.api.health_routes import ReadinessCheck
from rag_service.ports import ChatUpstream, Embedder, PassageSearch


def store_check(store: PassageSearch) -> ReadinessCheck:
    async def check() -> dict[str, Any]:
        info = await asyncio.to_thread(store.catalog_info)
        return {
            "ok": True,
            "catalog_version": info.version,
            "documents": info.document_count,
            "embedding_model": info.embedding_model,
        }

    return check


def embedder_check(embedder: Embedder) -> ReadinessCheck:
    async def check() -> dict[str, Any]:
        vectors = await asyncio.to_thread(embedder.embed, ["ready?"])
        return {"ok": len(vectors) == 1, "model": embedder.model_name}

    return check


def upstream_report(upstream: ChatUpstream) -> ReadinessCheck:
    """The upstream's state; a configuration problem is named in words under ``error``."""

    async def report() -> dict[str, Any]:
        health = upstream.health()
        body: dict[str, Any] = {"ok": health.ok, "breaker": health.breaker}
        if health.problem is not None:
            body["error"] = health.problem
        return body

    return report
