"""Health routes: liveness, readiness (store, embedder, upstream), and Prometheus metrics.

The checks that ``/readyz`` runs are built in ``rag_service.health.checks``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.responses import JSONResponse, Response

from rag_service.api import LIVENESS_DOC, READINESS_DOC, metrics_doc
from rag_service.health.checks import ReadinessCheck


@dataclass(frozen=True)
class HealthDeps:
    checks: Mapping[str, ReadinessCheck]  # required for readiness
    reports: Mapping[str, ReadinessCheck]  # reported, but do not fail readiness
    registry: CollectorRegistry
    timeout_s: float = 2.0


def health_router(*, get_deps: Callable[[Request], HealthDeps]) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", responses=LIVENESS_DOC)
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @router.get("/readyz", response_class=JSONResponse, responses=READINESS_DOC)
    async def readyz(request: Request) -> JSONResponse:
        """Ready when the vector store and the embedder work; the upstream state is reported."""
        deps = get_deps(request)
        names = [*deps.checks, *deps.reports]
        checks = [*deps.checks.values(), *deps.reports.values()]
        results = await asyncio.gather(*(_run(check, deps.timeout_s) for check in checks))
        components = dict(zip(names, results, strict=True))
        ready = all(components[name]["ok"] for name in deps.checks)
        body = {"status": "ready" if ready else "not_ready", "components": components}
        return JSONResponse(body, status_code=200 if ready else 503)

    @router.get("/metrics", response_class=Response, responses=metrics_doc(CONTENT_TYPE_LATEST))
    async def metrics(request: Request) -> Response:
        """Prometheus text format."""
        return Response(generate_latest(get_deps(request).registry), media_type=CONTENT_TYPE_LATEST)

    return router


async def _run(check: ReadinessCheck, timeout_s: float) -> dict[str, Any]:
    try:
        return await asyncio.wait_for(check(), timeout_s)
    except TimeoutError:
        return {"ok": False, "error": f"no answer within {timeout_s:g} s"}
    except Exception as error:  # a failing dependency is exactly what readiness reports
        return {"ok": False, "error": str(error)}
