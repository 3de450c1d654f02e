"""The upstream's readiness probe: one cheap, real request, ``GET {base_url}/models``.

The breaker only knows how the last answers went; after a quiet night it still says "closed"
while the model server is long gone, and the first user would wait through every retry. So
``/readyz`` asks the server itself. Any HTTP answer that shows the server is up and takes our
key counts as reachable: 200, but also 404/405 (a server without a model list) and 429 (up, but
busy). A refused connection, a timeout, a TLS or proxy problem, a refused key (401/403) or a
5xx is not, and the result names the cause in words.

Whether the list names the configured model is reported, not judged: single-model servers
(llama.cpp) answer under any name, and a false "not ready" takes a whole fleet out of its load
balancer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Protocol

from rag_service.domain import UpstreamProbe
from rag_service.errors import RagServiceError
from rag_service.upstream.classify import status_error

PROBE_TIMEOUT_S = 2.0
# Answers that prove the server is there and takes our key, though it lists no models.
_REACHABLE_WITHOUT_LIST = {404: "has no model list", 405: "has no model list", 429: "is busy"}
_MODELS_SHOWN = 5


class ModelsEndpoint(Protocol):
    async def get_models(self, timeout_s: float) -> tuple[int, bytes]: ...


async def probe_models(
    endpoint: ModelsEndpoint,
    *,
    model: str,
    secret: str,
    clock: Callable[[], float] = time.monotonic,
    timeout_s: float = PROBE_TIMEOUT_S,
) -> UpstreamProbe:
    """Ask the upstream for its models; never raises, the result says what went wrong."""
    started = clock()
    try:
        status, body = await endpoint.get_models(timeout_s)
    except RagServiceError as error:
        return UpstreamProbe(ok=False, detail=error.message)
    elapsed_ms = round((clock() - started) * 1000)
    if status == 200:
        listed = _model_ids(body)
        if listed is None:
            return UpstreamProbe(ok=True, detail=f"GET /models answered 200 in {elapsed_ms} ms")
        found = model in listed
        detail = f"GET /models answered 200 in {elapsed_ms} ms"
        if not found:
            shown = ", ".join(listed[:_MODELS_SHOWN]) + (
                ", ..." if len(listed) > _MODELS_SHOWN else ""
            )
            detail += f"; it does not list the model {model!r} (it lists: {shown or 'none'})"
        return UpstreamProbe(ok=True, detail=detail, model_listed=found)
    if status in _REACHABLE_WITHOUT_LIST:
        why = _REACHABLE_WITHOUT_LIST[status]
        return UpstreamProbe(
            ok=True, detail=f"GET /models answered {status} in {elapsed_ms} ms: the server {why}"
        )
    refusal = status_error(status, {}, body, now=time.time(), secret=secret)
    return UpstreamProbe(ok=False, detail=f"GET /models: {refusal.message}")


def _model_ids(body: bytes) -> list[str] | None:
    """The ids of an OpenAI model list, or None when the body is not one."""
    try:
        data: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return None
    return [str(e["id"]) for e in entries if isinstance(e, dict) and "id" in e]
