"""The upstream's readiness probe (``GET /models``) and ``/readyz`` built on it: ready only after
a real answer from the upstream, the cause named in words when there is none, one probe per TTL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from rag_service.app import Components, create_app
from rag_service.errors import UpstreamRetryable
from rag_service.health import UpstreamCheck
from rag_service.ports import ChatUpstream
from rag_service.settings import Settings
from rag_service.upstream import OpenAICompatibleUpstream
from rag_service.upstream.probe import probe_models
from tests.conftest import free_port
from tests.fakes.retrieval import HashingEmbedder, InMemoryPassageSearch
from tests.fakes.upstream import ScriptedUpstream
from tests.fixture_servers.fault_upstream import FaultUpstream
from tests.upstream.conftest import settings_for


class ModelsAnswer:
    """A ``ModelsEndpoint`` that answers as told (a status and body, or an error)."""

    def __init__(self, status: int = 200, body: object = None, error: Exception | None = None):
        self.status = status
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.error = error

    async def get_models(self, timeout_s: float) -> tuple[int, bytes]:
        if self.error is not None:
            raise self.error
        return self.status, self.body


def model_list(*ids: str) -> dict[str, object]:
    return {"object": "list", "data": [{"id": i, "object": "model"} for i in ids]}


async def probe(answer: ModelsAnswer, model: str = "smollm2") -> tuple[bool, str, bool | None]:
    result = await probe_models(answer, model=model, secret="sk-secret")
    return result.ok, result.detail, result.model_listed


async def test_a_model_list_is_reachable_and_says_whether_it_names_our_model() -> None:
    ok, detail, listed = await probe(ModelsAnswer(200, model_list("smollm2")))
    assert (ok, listed) == (True, True)
    assert detail.startswith("GET /models answered 200 in ")
    ok, detail, listed = await probe(ModelsAnswer(200, model_list("a", "b")))
    assert (ok, listed) == (True, False)  # reported, not judged: llama.cpp answers any name
    assert "does not list the model 'smollm2' (it lists: a, b)" in detail


async def test_answers_that_prove_the_server_is_up_count_as_reachable() -> None:
    for status in (404, 405, 429):
        ok, detail, listed = await probe(ModelsAnswer(status, b"nope"))
        assert (ok, listed) == (True, None), status
        assert f"answered {status}" in detail
    assert (await probe(ModelsAnswer(200, b"<html>")))[:1] == (True,)  # not a list: still up


async def test_a_refused_key_a_server_error_or_no_connection_is_not_reachable() -> None:
    refused = ModelsAnswer(401, {"error": {"message": "bad key sk-secret"}})
    ok, detail, _ = await probe(refused)
    assert not ok
    assert "401" in detail and "bad key" in detail and "sk-secret" not in detail
    ok, detail, _ = await probe(ModelsAnswer(503, {"error": {"message": "loading model"}}))
    assert not ok and "503" in detail and "loading model" in detail
    down = UpstreamRetryable(
        "cannot connect to the upstream 127.0.0.1:1 (connection refused)", reason="connect_error"
    )
    ok, detail, _ = await probe(ModelsAnswer(error=down))
    assert (ok, detail) == (False, down.message)


async def test_the_real_client_probes_the_upstream_through_its_pool() -> None:
    async with FaultUpstream() as upstream:
        client = OpenAICompatibleUpstream(settings_for(upstream.base_url, model="fault-model"))
        try:
            result = await client.probe()
        finally:
            await client.aclose()
    assert (result.ok, result.model_listed) == (True, True)
    [request] = upstream.requests
    assert (request.method, request.path) == ("GET", "/v1/models")
    client = OpenAICompatibleUpstream(settings_for(f"http://127.0.0.1:{free_port()}/v1"))
    try:
        down = await client.probe()
    finally:
        await client.aclose()
    assert not down.ok
    assert "connect" in down.detail and "Traceback" not in down.detail


async def test_one_probe_per_ttl_shared_by_concurrent_callers() -> None:
    now = [0.0]
    upstream = ScriptedUpstream(script=[])
    check = UpstreamCheck(upstream, ttl_s=5.0, clock=lambda: now[0])
    first = await asyncio.gather(*(check() for _ in range(10)))
    assert upstream.probe_calls == 1
    assert all(result == first[0] for result in first)
    now[0] = 4.9
    await check()
    assert upstream.probe_calls == 1
    now[0] = 5.0
    await check()
    assert upstream.probe_calls == 2


@asynccontextmanager
async def service_with(upstream: ChatUpstream, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(fallback_context_file=tmp_path / "none")
    embedder = HashingEmbedder(64)
    parts = Components(embedder=embedder, store=InMemoryPassageSearch(embedder), upstream=upstream)
    app = create_app(settings, parts)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield client


async def test_readyz_is_not_ready_while_the_model_server_is_down(tmp_path: Path) -> None:
    port = free_port()
    client = OpenAICompatibleUpstream(settings_for(f"http://127.0.0.1:{port}/v1"))
    async with service_with(client, tmp_path) as http:
        ready = await http.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not_ready"
    upstream = body["components"]["upstream"]
    assert upstream["ok"] is False
    assert f"127.0.0.1:{port}" in upstream["error"]
    assert "Traceback" not in json.dumps(body)
    assert body["components"]["vector_store"]["ok"] is True  # only the upstream is missing


async def test_readyz_is_ready_once_the_upstream_answers(tmp_path: Path) -> None:
    async with FaultUpstream() as server:
        client = OpenAICompatibleUpstream(settings_for(server.base_url, model="fault-model"))
        async with service_with(client, tmp_path) as http:
            ready = await http.get("/readyz")
            again = await http.get("/readyz")
    assert ready.status_code == 200, ready.text
    upstream = ready.json()["components"]["upstream"]
    assert upstream["ok"] is True and upstream["model_listed"] is True
    assert upstream["probe"].startswith("GET /models answered 200")
    assert again.json()["components"]["upstream"] == upstream  # cached, not asked again
    assert [r.path for r in server.requests] == ["/v1/models"]
