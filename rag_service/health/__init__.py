"""Health: the liveness, readiness and metrics routes (``router``) and the readiness checks of
the service's dependencies (``checks``)."""

from rag_service.health.checks import (
    UPSTREAM_PROBE_TTL_S,
    ReadinessCheck,
    SharedStateCheck,
    SharedStateComponent,
    UpstreamCheck,
    embedder_check,
    store_check,
)
from rag_service.health.router import HealthDeps, health_router

__all__ = [
    "UPSTREAM_PROBE_TTL_S",
    "HealthDeps",
    "ReadinessCheck",
    "SharedStateCheck",
    "SharedStateComponent",
    "UpstreamCheck",
    "embedder_check",
    "health_router",
    "store_check",
]
