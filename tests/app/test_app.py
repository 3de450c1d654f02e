"""The assembled service: freshness across requests, auth, error shapes, admin, health."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

from rag_service.app import Components, create_app
from rag_service.server.process_tuning import YOUNG_GC_THRESHOLD, serving_gc
from tests.app.conftest import (
    ANSWER,
    Service,
    admin_auth,
    app_settings,
    client_auth,
    running_service,
    wait_for_job,
)
from tests.fakes.retrieval import HashingEmbedder
from tests.fakes.upstream import ScriptedUpstream, answer_script
from tests.ingest.catalogs import product, write_products
from tests.streaming.helpers import assert_error_shape, deltas
from tests.streaming.sse_spec import parse_sse


async def ask(service: Service, context: str = "shop:user-1", **body: Any) -> list[Any]:
    response = await service.client.post(
        "/rag/stream",
        params={"context": context},
        json={"query": "How much is the tent?", **body},
        headers=client_auth(),
    )
    assert response.status_code == 200, response.text
    return parse_sse(response.content).events


async def test_an_answer_is_grounded_then_served_fresh(service: Service) -> None:
    first = await ask(service)
    meta = first[0].json()
    assert meta["context"]["state"] == "refreshed"
    assert meta["context"]["catalog_version"] == 1
    assert meta["context"]["sources"]
    assert deltas(first) == "".join(ANSWER)
    prompt = "".join(m.content for m in service.upstream.requests[0].messages)
    assert "[source: SKU-" in prompt
    embedded = service.embedder.calls
    second = await ask(service)
    assert second[0].json()["context"]["state"] == "fresh"
    assert service.embedder.calls == embedded  # no embedding, no search for a fresh context


async def test_client_keys_are_required(service: Service) -> None:
    response = await service.client.post(
        "/rag/stream", params={"context": "c1"}, json={"query": "hi"}
    )
    assert assert_error_shape(response, 401)["code"] == "unauthorized"
    wrong = await service.client.post(
        "/rag/stream",
        params={"context": "c1"},
        json={"query": "hi"},
        headers={"Authorization": "Bearer nope"},
    )
    assert_error_shape(wrong, 401)


async def test_bad_input_gets_the_json_error_shape(service: Service) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"params": {"context": "bad id!"}, "json": {"query": "q"}}, "context"),
        ({"params": {"context": "c"}, "json": {"query": ""}}, "query"),
        ({"params": {"context": "c"}, "json": {"query": 5}}, "query"),
        ({"params": {"context": "c"}, "content": b"{not json"}, "body"),
    ]
    for kwargs, field in cases:
        response = await service.client.post("/rag/stream", headers=client_auth(), **kwargs)
        error = assert_error_shape(response, 400)
        assert error["code"] == "invalid_request"
        fields = [p["field"] for p in error["details"].get("errors", [])] or [
            error["details"]["field"]
        ]
        assert fields == [field], (kwargs, error)
    missing = await service.client.get("/no/such/route")
    assert assert_error_shape(missing, 404)["code"] == "not_found"
    wrong_method = await service.client.get("/rag/stream")
    assert_error_shape(wrong_method, 405)


async def test_admin_needs_the_admin_key(service: Service) -> None:
    assert_error_shape(await service.client.get("/admin/catalog"), 401)
    client_key = await service.client.get("/admin/catalog", headers=client_auth())
    assert_error_shape(client_key, 401)
    ok = await service.client.get("/admin/catalog", headers=admin_auth())
    assert ok.json()["version"] == 1
    assert ok.json()["document_count"] == 14


async def test_admin_reingest_by_path_publishes_and_refreshes_contexts(service: Service) -> None:
    await ask(service)
    catalog = service.settings.ingest.catalog_dir / "products.jsonl"
    write_products(catalog, [product(i) for i in range(12)] + [product(99)])
    response = await service.client.post("/admin/ingest", json={"path": "."}, headers=admin_auth())
    assert response.status_code == 202
    job = await wait_for_job(service, response.json()["job_id"])
    assert job["status"] == "succeeded", job
    assert job["report"]["added"] == 1
    assert job["report"]["unchanged"] == 14
    assert job["progress"]["phase"] == "publish"
    # No wait: the job told the freshness cache the version it published.
    after = await ask(service)
    assert after[0].json()["context"]["state"] == "refreshed"
    assert after[0].json()["context"]["catalog_version"] == 2


async def test_admin_ingest_refuses_bad_requests(service: Service) -> None:
    outside = await service.client.post(
        "/admin/ingest", json={"path": "../../etc"}, headers=admin_auth()
    )
    assert "catalog directory" in assert_error_shape(outside, 400)["message"]
    missing = await service.client.post(
        "/admin/ingest", json={"path": "nope.jsonl"}, headers=admin_auth()
    )
    assert_error_shape(missing, 404)
    unknown = await service.client.post(
        "/admin/ingest", json={"path": ".", "force": True}, headers=admin_auth()
    )
    assert_error_shape(unknown, 400)
    no_name = await service.client.post("/admin/ingest", content=b"x", headers=admin_auth())
    assert "filename" in assert_error_shape(no_name, 400)["message"]
    assert_error_shape(await service.client.get("/admin/ingest/nope", headers=admin_auth()), 404)


async def test_admin_upload_reports_bad_lines_with_file_and_line(service: Service) -> None:
    body = "".join(json.dumps(product(i)) + "\n" for i in range(12)) + "{broken\n"
    response = await service.client.post(
        "/admin/ingest",
        params={"filename": "upload.jsonl", "append": "true"},
        content=body.encode(),
        headers=admin_auth() | {"Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 202, response.text
    job = await wait_for_job(service, response.json()["job_id"])
    assert job["status"] == "succeeded"
    assert job["report"]["failed"] == [
        {"file": "upload.jsonl", "line": 13, "reason": job["report"]["failed"][0]["reason"]}
    ]
    assert "JSON" in job["report"]["failed"][0]["reason"]


async def test_a_second_admin_ingest_is_refused_while_one_runs(service: Service) -> None:
    service.embedder.gate.close()
    catalog = service.settings.ingest.catalog_dir / "products.jsonl"
    write_products(catalog, [product(i, price=1.0) for i in range(12)])
    first = await service.client.post("/admin/ingest", json={"path": "."}, headers=admin_auth())
    assert first.status_code == 202
    second = await service.client.post("/admin/ingest", json={"path": "."}, headers=admin_auth())
    assert assert_error_shape(second, 409)["code"] == "ingest_in_progress"
    service.embedder.gate.open()
    assert (await wait_for_job(service, first.json()["job_id"]))["status"] == "succeeded"


async def test_invalidate_one_context(service: Service) -> None:
    await ask(service, context="ctx-a")
    response = await service.client.post("/admin/contexts/ctx-a/invalidate", headers=admin_auth())
    assert response.json() == {"context_id": "ctx-a", "invalidated": True}
    assert (await ask(service, context="ctx-a"))[0].json()["context"]["state"] == "refreshed"
    bad = await service.client.post("/admin/contexts/bad%20id/invalidate", headers=admin_auth())
    assert_error_shape(bad, 400)


async def test_health_readiness_and_metrics(service: Service) -> None:
    assert (await service.client.get("/healthz")).json() == {"status": "ok"}
    ready = await service.client.get("/readyz")
    assert ready.status_code == 200
    components = ready.json()["components"]
    assert components["vector_store"]["catalog_version"] == 1
    assert components["embedder"]["ok"] is True
    await ask(service)
    metrics = (await service.client.get("/metrics")).text
    assert "rag_streams_sessions" in metrics
    assert 'rag_context_resolutions_total{state="refreshed"} 1.0' in metrics
    assert "rag_catalog_version 1.0" in metrics


async def test_a_served_app_collects_young_objects_less_often_and_others_leave_gc_alone(
    tmp_path: Path,
) -> None:
    before = gc.get_threshold()
    settings = app_settings(tmp_path)
    async with running_service(settings):
        assert gc.get_threshold() == before  # an app of a test changes nothing process-wide

    upstream = ScriptedUpstream(script=answer_script(["Hi."]))
    parts = Components(embedder=HashingEmbedder(64), upstream=upstream)
    app = create_app(settings, parts, process_tuning=serving_gc)  # as `rag-service serve` does
    async with app.router.lifespan_context(app):
        assert gc.get_threshold() == (YOUNG_GC_THRESHOLD, *before[1:])
    assert gc.get_threshold() == before  # a stopped service leaves the process as it found it
