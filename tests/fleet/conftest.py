"""Fleet tests with real processes: N service replicas (``python -m rag_service serve``, each on
a free loopback port) sharing one ``redis-server``, one ``chroma run`` holding a catalog
ingested once, and one upstream process (``tests/fleet/upstream_process.py``).

Usage (in tests under tests/fleet/)::

    def test_something(fleet: Fleet) -> None:        # 2 replicas, ready
        a, b = fleet.replicas
        with a.client() as http:                     # httpx.Client on a's URL
            http.post("/rag/stream", params={"context": "shop:1"}, json={"query": "tent?"},
                      headers=fleet.auth(KEY_A))
        b.kill()                                     # SIGKILL; b.start(); b.wait_ready()

    def test_other(start_fleet: StartFleet, own_redis: RedisServer) -> None:  # a Redis to kill
        fleet = start_fleet(3, redis=own_redis, settings={"RAG_LIMITS__STREAMS": "1"})

- ``start_fleet(count, *, redis=None, settings=None, options=())``: starts ``count`` replicas
  at once and waits until each one's ``/readyz`` is 200 (generous limit, no sleeps); stopped
  (SIGTERM) after the test. ``redis``: the session's ``redis_server`` by default, or a server
  of the test's own (``own_redis``) that it may stop and start. ``settings``: RAG_*
  variables over the fleet's (see ``fleet_settings``); ``options``: after ``serve``.
  Every fleet writes under a Redis key prefix of its own (``Fleet.key_prefix``).
- ``Fleet``: ``replicas``, ``redis``, ``key_prefix``, ``settings`` (the RAG_* variables the
  replicas got), ``auth(key)``; ``Replica``: ``url``, ``client()``, ``readyz()``,
  ``wait_ready()``, ``stop()`` (SIGTERM, returns the exit code), ``kill()`` (SIGKILL),
  ``start()`` (again, same port and environment), ``pid``, ``log_tail()``.
- Client keys ``KEY_A`` / ``KEY_B`` (ids ``ID_A`` / ``ID_B``), admin key ``ADMIN_KEY``.
- The upstream answers deterministically (a replayed request streams the same text); a
  question containing ``HOLD`` ("[hold]") stalls after its first word until the stream is
  cancelled, one containing ``FAIL`` ("[fail]") gets 503 (tests/fleet/upstream_process.py).
- The catalog (policies and 30 products of data/catalog) is ingested once per session into the
  collection ``FLEET_COLLECTION`` of the Chroma server, by the real CLI (``rag-service
  ingest``). A test that changes the catalog ingests its own copy into a collection of its own
  (``ingest_collection``) and passes ``RAG_CHROMA__COLLECTION`` in ``settings``.
- When a test fails, the tail of every fleet process's log is added to its report.

In-process replicas (tests/fleet/replicas.py) get their settings from ``shared_settings``:
``shared_settings(**overrides)`` is ``replicas.fleet_settings`` on the session's Chroma and Redis,
under the test's key prefix, in a Chroma collection of its own. ``own_redis``
(tests/conftest.py) is a ``redis-server`` of the test's own, to stop, start or flush.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from rag_service.api import principal_of
from rag_service.settings import Settings
from tests.conftest import REPO, free_port, run_cli
from tests.fleet import replicas
from tests.fleet.processes import ManagedProcess, Replica, replica_process, upstream_process
from tests.fleet.upstream_process import FAIL, HOLD
from tests.redis_server import RedisServer

__all__ = ["FAIL", "HOLD", "Fleet", "StartFleet"]

KEY_A = "fleet-key-a"
KEY_B = "fleet-key-b"
ID_A = principal_of(KEY_A)
ID_B = principal_of(KEY_B)
ADMIN_KEY = "fleet-admin-key"
FLEET_COLLECTION = "fleet"
SAMPLE_PRODUCTS = 30

FLEET_PROCESSES = pytest.StashKey[list[ManagedProcess]]()


@dataclass(frozen=True)
class FleetCatalog:
    host: str
    port: int
    collection: str
    catalog_dir: Path
    lock_file: Path


@dataclass
class Fleet:
    replicas: list[Replica]
    redis: RedisServer
    key_prefix: str
    settings: dict[str, str]

    @staticmethod
    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


class StartFleet(Protocol):
    def __call__(
        self,
        count: int = 2,
        *,
        redis: RedisServer | None = None,
        settings: dict[str, str] | None = None,
        options: Sequence[str] = (),
    ) -> Fleet: ...


def sample_catalog(directory: Path) -> Path:
    """The policies and the first products of data/catalog, copied into ``directory``."""
    shutil.copytree(REPO / "data" / "catalog" / "policies", directory / "policies")
    lines = (REPO / "data" / "catalog" / "products.jsonl").read_text().splitlines()
    (directory / "products.jsonl").write_text("\n".join(lines[:SAMPLE_PRODUCTS]) + "\n")
    return directory


def ingest_collection(catalog: FleetCatalog, collection: str, catalog_dir: Path) -> None:
    """``rag-service ingest catalog_dir`` into ``collection`` of the fleet's Chroma server."""
    result = run_cli(
        catalog_dir.parent,
        "ingest",
        str(catalog_dir),
        "--yes",
        RAG_CHROMA__HOST=catalog.host,
        RAG_CHROMA__PORT=str(catalog.port),
        RAG_CHROMA__COLLECTION=collection,
        RAG_INGEST__CATALOG_DIR=str(catalog_dir),
        RAG_INGEST__LOCK_FILE=str(catalog.lock_file),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="session")
def fleet_catalog(
    chroma_server: tuple[str, int], tmp_path_factory: pytest.TempPathFactory
) -> FleetCatalog:
    root = tmp_path_factory.mktemp("fleet-catalog")
    host, port = chroma_server
    catalog = FleetCatalog(
        host, port, FLEET_COLLECTION, sample_catalog(root / "catalog"), root / "ingest.lock"
    )
    ingest_collection(catalog, FLEET_COLLECTION, catalog.catalog_dir)
    return catalog


@pytest.fixture(scope="session")
def fleet_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    upstream = upstream_process(free_port(), tmp_path_factory.mktemp("fleet-upstream"))
    yield upstream
    upstream.stop()


def fleet_settings(
    catalog: FleetCatalog, upstream: ManagedProcess, redis: RedisServer, key_prefix: str
) -> dict[str, str]:
    """The RAG_* variables every replica of a fleet gets."""
    upstream_port = upstream.command[upstream.command.index("--port") + 1]
    return {
        "RAG_SERVER__HOST": "127.0.0.1",
        "RAG_CHROMA__HOST": catalog.host,
        "RAG_CHROMA__PORT": str(catalog.port),
        "RAG_CHROMA__COLLECTION": catalog.collection,
        "RAG_INGEST__CATALOG_DIR": str(catalog.catalog_dir),
        "RAG_INGEST__LOCK_FILE": str(catalog.lock_file),
        "RAG_REDIS__URL": redis.url,
        "RAG_REDIS__KEY_PREFIX": key_prefix,
        "RAG_REDIS__RETRY_INTERVAL_S": "0.5",
        "RAG_UPSTREAM__BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
        "RAG_API_KEYS": f"{KEY_A},{KEY_B}",
        "RAG_ADMIN_API_KEY": ADMIN_KEY,
        "RAG_FALLBACK_CONTEXT_FILE": str(REPO / "data" / "fallback_context.md"),
    }


@pytest.fixture
def shared_settings(
    tmp_path: Path, chroma_server: tuple[str, int], redis_server: RedisServer, redis_prefix: str
) -> replicas.SharedSettings:
    """In-process replicas' settings on the session's Chroma and Redis (see the docstring)."""

    def settings(*, collection: str | None = None, **overrides: Any) -> Settings:
        return replicas.fleet_settings(
            tmp_path,
            chroma_server,
            redis_server.url,
            redis_prefix,
            collection=collection,
            **overrides,
        )

    return settings


@pytest.fixture
def start_fleet(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    fleet_catalog: FleetCatalog,
    fleet_upstream: ManagedProcess,
) -> Iterator[StartFleet]:
    started: list[ManagedProcess] = [fleet_upstream]
    request.node.stash[FLEET_PROCESSES] = started

    def start(
        count: int = 2,
        *,
        redis: RedisServer | None = None,
        settings: dict[str, str] | None = None,
        options: Sequence[str] = (),
    ) -> Fleet:
        redis = redis or request.getfixturevalue("redis_server")
        key_prefix = f"fleet-{uuid.uuid4().hex[:10]}:"
        env = fleet_settings(fleet_catalog, fleet_upstream, redis, key_prefix) | (settings or {})
        directory = tmp_path / f"fleet-{key_prefix.strip(':')}"
        replicas = [
            replica_process(f"replica-{'abcdefgh'[i]}", free_port(), env, directory, *options)
            for i in range(count)
        ]
        for replica in replicas:  # all at once: their start-ups overlap
            started.append(replica)
            replica.start()
        for replica in replicas:
            replica.wait_ready()
        return Fleet(replicas, redis, key_prefix, env)

    yield start
    for process in started[1:]:
        process.stop()


@pytest.fixture
def fleet(start_fleet: StartFleet) -> Fleet:
    """Two replicas on the session's Redis, ready."""
    return start_fleet(2)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        for process in item.stash.get(FLEET_PROCESSES, []):
            report.sections.append((f"log of {process.name}", process.log_tail()))
