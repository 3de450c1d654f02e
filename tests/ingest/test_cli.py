"""`rag-service ingest` and `rag-service catalog` as an admin runs them (real model, real store)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag_service.adapters.store_lock import StoreLock
from tests.conftest import run_cli as cli
from tests.ingest.catalogs import product, write_policy, write_products

pytestmark = pytest.mark.slow


def live_catalog(cwd: Path, **settings: str) -> dict[str, object]:
    shown = cli(cwd, "catalog", "--json", **settings)
    assert shown.returncode == 0, shown.stderr
    info: dict[str, object] = json.loads(shown.stdout)
    return info


def test_ingest_reports_and_refuses_bad_input_without_touching_the_catalog(
    tmp_path: Path,
) -> None:
    catalog = tmp_path / "catalog"
    products = write_products(catalog / "products.jsonl", [product(i) for i in range(6)])
    write_policy(catalog / "returns.md")

    first = cli(tmp_path, "ingest", "catalog", "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert (report["added"], report["version_after"], report["failed"]) == (8, 1, [])
    info = live_catalog(tmp_path)
    assert (info["version"], info["document_count"]) == (1, 8)
    assert info["sources"] == {"products.jsonl": 6, "returns.md": 2}

    with products.open("a") as f:
        f.write('{"sku": "SKU-9", "name": "x"}\n')
    strict = cli(tmp_path, "ingest", "catalog", "--strict")
    assert strict.returncode == 2
    assert "products.jsonl:7" in strict.stdout
    assert "missing required field" in strict.stdout
    assert live_catalog(tmp_path)["version"] == 1

    dry = cli(tmp_path, "ingest", "catalog", "--dry-run")
    assert dry.returncode == 0
    assert "Dry run" in dry.stdout
    assert "products.jsonl:7" in dry.stdout
    assert live_catalog(tmp_path)["version"] == 1

    missing = cli(tmp_path, "ingest", "nowhere")
    assert missing.returncode == 2
    assert "no documents found" in missing.stdout
    assert "no such file or directory" in missing.stdout


def test_ingest_refuses_a_store_owned_by_a_running_service(tmp_path: Path) -> None:
    write_products(tmp_path / "p.jsonl", [product(1)])
    with StoreLock(tmp_path / "var" / "chroma.lock", purpose="serve", url="http://127.0.0.1:8000"):
        refused = cli(tmp_path, "ingest", "p.jsonl")
        assert refused.returncode == 2
        assert "in use by rag-service serve" in refused.stdout
        assert "POST /admin/ingest" in refused.stdout
        catalog = cli(tmp_path, "catalog")
        assert catalog.returncode == 2


def test_a_subfolder_sync_stays_in_it_and_a_mass_deletion_needs_yes(tmp_path: Path) -> None:
    root = {"RAG_INGEST__CATALOG_DIR": "catalog"}
    catalog = tmp_path / "catalog"
    products = write_products(catalog / "products.jsonl", [product(i) for i in range(6)])
    write_policy(catalog / "policies" / "returns.md")
    write_policy(catalog / "policies" / "shipping.md")
    assert cli(tmp_path, "ingest", "catalog", **root).returncode == 0

    (catalog / "policies" / "shipping.md").unlink()
    sub = cli(tmp_path, "ingest", "catalog/policies", "--json", **root)
    assert sub.returncode == 0, sub.stderr
    assert (json.loads(sub.stdout)["deleted"], json.loads(sub.stdout)["kept"]) == (2, 6)
    assert live_catalog(tmp_path, **root)["sources"] == {
        "policies/returns.md": 2,
        "products.jsonl": 6,
    }

    write_products(products, [product(1)])
    refused = cli(tmp_path, "ingest", "catalog/products.jsonl", **root)
    assert refused.returncode == 2
    assert "confirmation_required" in refused.stdout
    assert "delete 5 of the 8 documents" in refused.stdout
    assert live_catalog(tmp_path, **root)["version"] == 2
    dry = cli(tmp_path, "ingest", "catalog/products.jsonl", "--dry-run", **root)
    assert dry.returncode == 0 and "needs confirmation" in dry.stdout

    confirmed = cli(tmp_path, "ingest", "catalog/products.jsonl", "--yes", "--json", **root)
    assert confirmed.returncode == 0, confirmed.stdout
    assert json.loads(confirmed.stdout)["deleted"] == 5
    info = live_catalog(tmp_path, **root)
    assert info["sources"] == {"policies/returns.md": 2, "products.jsonl": 1}
