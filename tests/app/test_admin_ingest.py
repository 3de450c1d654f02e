"""Admin ingest over HTTP as a clumsy or hostile admin would use it: subfolder syncs, uploads
named like live files, mass deletions, symlinks out of the catalog directory, odd input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rag_service.settings import Settings
from tests.app.conftest import (
    Service,
    admin_auth,
    app_settings,
    running_service,
    wait_for_job,
)
from tests.ingest.catalogs import jsonl, product, write_policy
from tests.streaming.helpers import assert_error_shape

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The app's catalog (products.jsonl: 12, returns.md: 2) plus policies/ (2 x 2): 18 docs."""
    settings = app_settings(tmp_path)
    write_policy(settings.ingest.catalog_dir / "policies" / "shipping.md")
    write_policy(settings.ingest.catalog_dir / "policies" / "warranty.md")
    return settings


@pytest.fixture
async def admin(settings: Settings) -> AsyncIterator[Service]:
    async with running_service(settings) as running:
        yield running


async def ingest_path(service: Service, **body: Any) -> dict[str, Any]:
    response = await service.client.post("/admin/ingest", json=body, headers=admin_auth())
    assert response.status_code == 202, response.text
    return await wait_for_job(service, response.json()["job_id"])


async def upload(service: Service, content: str, **params: str) -> dict[str, Any]:
    response = await service.client.post(
        "/admin/ingest",
        params=params,
        content=content.encode("utf-8", "surrogatepass"),
        headers=admin_auth() | {"Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 202, response.text
    return await wait_for_job(service, response.json()["job_id"])


async def live_catalog(service: Service) -> dict[str, Any]:
    response = await service.client.get("/admin/catalog", headers=admin_auth())
    catalog: dict[str, Any] = response.json()
    return catalog


async def test_a_subfolder_sync_leaves_the_other_folders_untouched(
    admin: Service, settings: Settings
) -> None:
    (settings.ingest.catalog_dir / "policies" / "warranty.md").unlink()

    job = await ingest_path(admin, path="policies")

    assert job["status"] == "succeeded", job
    assert (job["report"]["deleted"], job["report"]["unchanged"]) == (2, 2)
    assert (job["report"]["kept"], job["report"]["added"]) == (14, 0)
    catalog = await live_catalog(admin)
    assert catalog["sources"] == {
        "policies/shipping.md": 2,
        "products.jsonl": 12,
        "returns.md": 2,
    }


async def test_an_upload_named_like_a_live_file_replaces_only_that_file(admin: Service) -> None:
    job = await upload(admin, jsonl(*[product(i) for i in range(10)]), filename="products.jsonl")

    assert job["status"] == "succeeded", job
    assert (job["report"]["deleted"], job["report"]["unchanged"]) == (2, 10)
    assert (await live_catalog(admin))["sources"] == {
        "policies/shipping.md": 2,
        "policies/warranty.md": 2,
        "products.jsonl": 10,
        "returns.md": 2,
    }


async def test_a_mass_deletion_is_refused_without_confirmation(admin: Service) -> None:
    before = await live_catalog(admin)
    one_product = jsonl(product(1))

    refused = await upload(admin, one_product, filename="products.jsonl")

    assert refused["status"] == "failed"
    error = refused["error"]
    assert (error["code"], error["retryable"]) == ("confirmation_required", False)
    assert error["details"] == {
        "deleted": 11,
        "live_documents": 18,
        "share": 0.6111,
        "max_delete_share": 0.2,
        "deleted_sources": {"products.jsonl": 11},
    }
    assert "delete 11 of the 18 documents" in error["message"]
    assert await live_catalog(admin) == before

    dry = await upload(admin, one_product, filename="products.jsonl", dry_run="true")
    assert dry["status"] == "succeeded"
    assert (dry["report"]["needs_confirmation"], dry["report"]["deleted"]) == (True, 11)
    assert await live_catalog(admin) == before

    done = await upload(admin, one_product, filename="products.jsonl", confirm_deletions="true")
    assert done["status"] == "succeeded", done
    assert done["report"]["deleted"] == 11
    after = await live_catalog(admin)
    assert after["version"] == before["version"] + 1
    assert after["sources"]["products.jsonl"] == 1


async def test_a_mass_deletion_by_path_needs_confirm_deletions_in_the_body(
    admin: Service, settings: Settings
) -> None:
    (settings.ingest.catalog_dir / "products.jsonl").unlink()

    refused = await ingest_path(admin, path=".")
    assert refused["error"]["code"] == "confirmation_required"
    assert refused["error"]["details"]["deleted"] == 12
    assert (await live_catalog(admin))["document_count"] == 18

    done = await ingest_path(admin, path=".", confirm_deletions=True)
    assert done["status"] == "succeeded", done
    assert (await live_catalog(admin))["document_count"] == 6


async def test_a_symlink_out_of_the_catalog_directory_is_skipped_and_reported(
    admin: Service, settings: Settings, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    write_policy(secret / "secret.md")
    (settings.ingest.catalog_dir / "outdir").symlink_to(secret, target_is_directory=True)

    job = await ingest_path(admin, path=".")

    assert job["status"] == "succeeded", job
    assert job["report"]["failed"] == [
        {"file": "outdir", "line": None, "reason": "symlink points outside the catalog directory"}
    ]
    assert not any("outdir" in source for source in (await live_catalog(admin))["sources"])
    named = await admin.client.post("/admin/ingest", json={"path": "outdir"}, headers=admin_auth())
    error = assert_error_shape(named, 400)
    assert error["details"]["errors"][0]["field"] == "path"
    assert "inside the catalog directory" in error["message"]


async def test_catalog_text_that_cannot_be_carried_is_a_problem_with_file_and_line(
    admin: Service,
) -> None:
    lines = jsonl(*[product(i) for i in range(12)])
    lines += '{"sku": "X-1", "name": "bad \\ud800"}\n'
    lines += '{"sku": "X-2", "name": "nul \\u0000"}\n'
    lines += "[" * 100_000 + "]" * 100_000 + "\n"

    job = await upload(admin, lines, filename="products.jsonl")

    assert job["status"] == "succeeded", job
    assert [(p["file"], p["line"]) for p in job["report"]["failed"]] == [
        ("products.jsonl", 13),
        ("products.jsonl", 14),
        ("products.jsonl", 15),
    ]
    strict = await upload(admin, lines, filename="products.jsonl", strict="true")
    assert strict["status"] == "failed"
    assert strict["error"]["code"] == "invalid_catalog"
    assert strict["error"]["details"] == {"file": "products.jsonl", "line": 13}


async def test_a_deeply_nested_json_upload_names_the_file(admin: Service) -> None:
    job = await upload(admin, "[" * 100_000 + "]" * 100_000, filename="deep.json")

    assert job["status"] == "failed"
    assert job["error"]["code"] == "invalid_request"  # nothing to ingest, nothing changed
    assert "deep.json:1: JSON nested too deeply to read" in job["error"]["message"]


BAD_BODIES = [
    pytest.param(b'{"path": ".", "strict": "yes"}', "strict", id="string-for-bool"),
    pytest.param(b'{"path": ".", "dry_run": 1}', "dry_run", id="int-for-bool"),
    pytest.param(b'{"path": 7}', "path", id="int-for-path"),
    pytest.param(b'{"path": "a\\u0000b"}', "path", id="nul-in-path"),
    pytest.param(b'{"path": "a\\ud800b"}', "path", id="lone-surrogate-in-path"),
    pytest.param(b'{"path": "' + b"a" * 300 + b'"}', "path", id="name-too-long"),
    pytest.param(b'{"path": ".", "force": true}', "force", id="unknown-field"),
    pytest.param(b'{"path": ".", "\\ud800": true}', "body", id="lone-surrogate-field-name"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
async def test_an_invalid_body_is_a_400_naming_the_field(
    admin: Service, body: bytes, field: str
) -> None:
    response = await admin.client.post("/admin/ingest", content=body, headers=admin_auth() | JSON)
    error = assert_error_shape(response, 400)
    assert error["code"] == "invalid_request"
    assert [e["field"] for e in error["details"]["errors"]] == [field]


BAD_QUERIES = [
    pytest.param({"filename": "p.jsonl", "dry_run": "yes"}, "dry_run", id="yes-for-bool"),
    pytest.param({"filename": "p.jsonl", "strict": "1"}, "strict", id="1-for-bool"),
    pytest.param({"filename": "p.jsonl", "force": "true"}, "force", id="unknown-parameter"),
    pytest.param({"filename": "a\x00b.jsonl"}, "filename", id="nul-in-filename"),
    pytest.param({"filename": "../products.jsonl"}, "filename", id="folders-in-filename"),
    pytest.param({"filename": "a" * 300 + ".jsonl"}, "filename", id="filename-too-long"),
    pytest.param({"filename": ".hidden.jsonl"}, "filename", id="hidden-filename"),
    pytest.param({"filename": "p.exe"}, "filename", id="unsupported-suffix"),
    pytest.param({}, "filename", id="no-filename"),
]


@pytest.mark.parametrize(("params", "field"), BAD_QUERIES)
async def test_an_invalid_upload_query_is_a_400_naming_the_parameter(
    admin: Service, params: dict[str, str], field: str
) -> None:
    response = await admin.client.post(
        "/admin/ingest", params=params, content=b"{}", headers=admin_auth()
    )
    error = assert_error_shape(response, 400)
    assert [e["field"] for e in error["details"]["errors"]] == [field]


async def test_options_of_a_json_request_go_in_its_body(admin: Service) -> None:
    response = await admin.client.post(
        "/admin/ingest",
        params={"confirm_deletions": "true"},
        json={"path": "."},
        headers=admin_auth(),
    )
    error = assert_error_shape(response, 400)
    assert error["details"]["errors"][0]["field"] == "confirm_deletions"


@pytest.mark.parametrize("job_id", ["nope", "%00", "a%00b", "%ED%A0%80", "0" * 4000, "%C3%A9" * 20])
async def test_odd_job_ids_are_not_found(admin: Service, job_id: str) -> None:
    response = await admin.client.get(f"/admin/ingest/{job_id}", headers=admin_auth())
    assert assert_error_shape(response, 404)["code"] == "not_found"


@pytest.mark.parametrize("context_id", ["%00", "a%00b", "%ED%A0%80", "x" * 4000])
async def test_odd_context_ids_to_invalidate_are_refused(admin: Service, context_id: str) -> None:
    response = await admin.client.post(
        f"/admin/contexts/{context_id}/invalidate", headers=admin_auth()
    )
    assert assert_error_shape(response, 400)["code"] == "invalid_request"
