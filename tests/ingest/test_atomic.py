"""Atomicity: a killed or failing ingest leaves the live catalog whole, and a re-run converges.
Concurrency: a second ingest is refused while one runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ingest.pipeline import IngestPipeline
from rag_service.adapters.chroma_store import ChromaStore
from rag_service.errors import IngestInProgress, VectorStoreUnavailable
from rag_service.ingest_composition import ingest_lock
from rag_service.settings import ChromaSettings, IngestSettings, Settings
from tests.conftest import REPO
from tests.fakes.retrieval import HashingEmbedder
from tests.ingest.catalogs import product, write_products

V1 = [product(i) for i in range(120)]
# v2 changes a third, deletes a sixth and adds some: a mix would be visible at once.
V2 = [
    product(i, description=f"Revised item {i} with a new frame.") if i % 3 == 0 else product(i)
    for i in range(20, 120)
] + [product(i) for i in range(500, 530)]


def ids_of(products: list[dict[str, Any]]) -> list[str]:
    return sorted(f"{p['sku']}#0" for p in products)


def worker_env(chroma: ChromaSettings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["PYTHONPATH"] = str(REPO)
    env["RAG_CHROMA__COLLECTION"] = chroma.collection
    if chroma.host:
        env["RAG_CHROMA__HOST"], env["RAG_CHROMA__PORT"] = chroma.host, str(chroma.port)
    else:
        env["RAG_CHROMA__PATH"] = str(chroma.path)
    return env


def run_worker(chroma: ChromaSettings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.ingest.ingest_worker", *args],
        env=worker_env(chroma),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def check(chroma: ChromaSettings, *queries: str) -> dict[str, Any]:
    """The live state as a separate process reads it; per query also its lexical and hybrid
    top 3 documents (``ingest_worker.hybrid_results``)."""
    done = run_worker(chroma, "check", *(arg for query in queries for arg in ("--query", query)))
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def ingest_and_kill(chroma: ChromaSettings, catalog: Path, kill_after: str) -> None:
    """Start an ingest and SIGKILL it when it prints the line ``kill_after``."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.ingest.ingest_worker",
            "ingest",
            str(catalog),
            "--delay",
            "0.05",
        ],
        env=worker_env(chroma),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if line.strip() == kill_after:
                proc.send_signal(signal.SIGKILL)
                break
        else:
            pytest.fail(
                f"the ingest ended before {kill_after!r}: {proc.stderr.read() if proc.stderr else ''}"
            )
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", ["plan 130/130", "embed 8/63", "embed 40/63", "embed 63/63"])
def test_sigkill_mid_ingest_leaves_the_old_catalog_whole_and_a_rerun_converges(
    chroma_settings: ChromaSettings, tmp_path: Path, kill_after: str
) -> None:
    write_products(tmp_path / "v1" / "p.jsonl", V1)
    v2 = write_products(tmp_path / "v2" / "p.jsonl", V2)
    first = run_worker(chroma_settings, "ingest", str(tmp_path / "v1" / "p.jsonl"))
    assert first.returncode == 0, first.stderr

    ingest_and_kill(chroma_settings, v2, kill_after)

    after_kill = check(chroma_settings)
    assert after_kill["version"] == 1
    assert after_kill["ids"] == ids_of(V1)
    assert after_kill["searchable"] == 5
    rerun = run_worker(chroma_settings, "ingest", str(v2))
    assert rerun.returncode == 0, rerun.stderr
    converged = check(chroma_settings)
    assert converged["version"] == 2
    assert converged["ids"] == ids_of(V2)


class FailingAfter:
    """Wraps a store (or record set) and fails its ``n``-th write call, like a crash there."""

    WRITES: ClassVar[set[str]] = {
        "stage",
        "retire",
        "publish",
        "drop_unused_collections",
        "collect_garbage",
    }

    def __init__(self, inner: Any, counter: list[int], fail_at: int) -> None:
        self._inner, self._counter, self._fail_at = inner, counter, fail_at

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name == "records":
            return lambda n: FailingAfter(attr(n), self._counter, self._fail_at)
        if name not in self.WRITES:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._counter[0] += 1
            if self._counter[0] == self._fail_at:
                raise VectorStoreUnavailable(f"injected failure at write {self._fail_at}")
            return attr(*args, **kwargs)

        return call


def visible(store: ChromaStore) -> list[str]:
    state = store.live_state()
    assert state.records_collection
    return sorted(store.records(state.records_collection).live_records(state.version))


@pytest.fixture
def embedded_store(tmp_path: Path) -> ChromaStore:
    return ChromaStore.open(ChromaSettings(path=tmp_path / "chroma", collection="atomic"))


def test_a_failure_at_any_write_leaves_the_old_catalog_and_a_rerun_converges(
    embedded_store: ChromaStore, tmp_path: Path
) -> None:
    v1 = write_products(tmp_path / "v1" / "p.jsonl", V1)
    v2 = write_products(tmp_path / "v2" / "p.jsonl", V2)
    settings = IngestSettings()
    IngestPipeline(embedded_store, HashingEmbedder(64), settings, batch_size=16).run([v1])
    fail_at = 1
    while True:
        failing = FailingAfter(embedded_store, [0], fail_at)
        try:
            IngestPipeline(failing, HashingEmbedder(64), settings, batch_size=16).run([v2])
        except VectorStoreUnavailable:
            if embedded_store.live_version() == 1:  # failed before publish: nothing changed
                assert visible(embedded_store) == ids_of(V1)
            else:  # failed after publish (garbage collection): the new catalog is whole
                assert visible(embedded_store) == ids_of(V2)
            fail_at += 1
            continue
        break
    assert fail_at > 5  # every write step (stages, retire, publish, clean-ups) was hit
    assert embedded_store.live_version() == 2
    assert visible(embedded_store) == ids_of(V2)


def test_a_second_ingest_is_refused_while_one_runs(
    chroma_settings: ChromaSettings, tmp_path: Path
) -> None:
    catalog = write_products(tmp_path / "p.jsonl", V1[:10])
    settings = Settings(chroma=chroma_settings)
    with ingest_lock(settings):
        refused = run_worker(chroma_settings, "ingest", str(catalog))
        assert refused.returncode != 0
        assert "another ingest is running" in refused.stderr
        with pytest.raises(IngestInProgress):
            ingest_lock(settings).acquire()
    assert run_worker(chroma_settings, "ingest", str(catalog)).returncode == 0


def test_readers_during_an_ingest_see_the_old_or_the_new_catalog_never_a_mix(
    embedded_store: ChromaStore, tmp_path: Path
) -> None:
    v1 = write_products(tmp_path / "v1" / "p.jsonl", V1)
    v2 = write_products(tmp_path / "v2" / "p.jsonl", V2)
    IngestPipeline(embedded_store, HashingEmbedder(64), IngestSettings(), batch_size=4).run([v1])
    seen: list[list[str]] = []
    writer = threading.Thread(
        target=IngestPipeline(
            embedded_store, HashingEmbedder(64), IngestSettings(), batch_size=4
        ).run,
        args=([v2],),
    )
    writer.start()
    while writer.is_alive():
        seen.append(visible(embedded_store))
    writer.join()
    seen.append(visible(embedded_store))
    assert all(ids in (ids_of(V1), ids_of(V2)) for ids in seen)
    assert seen[0] == ids_of(V1)
    assert seen[-1] == ids_of(V2)
