"""``rag-service serve --workers N``: refused without shared state (Redis and a Chroma
server); with them, N worker processes on one port, each with its own metrics port, the
connection guard and the body deadline of every worker in force, and a clean shutdown."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from tests.conftest import free_port, run_cli
from tests.fleet.conftest import KEY_A, Fleet, FleetCatalog, fleet_settings
from tests.fleet.processes import ManagedProcess, replica_process
from tests.redis_server import RedisServer

REFUSED = 2  # a configuration error, as the other refusals to start
WORKERS = 2


@pytest.mark.parametrize("how", ["option", "setting"])
def test_workers_without_redis_are_refused(tmp_path: Path, how: str) -> None:
    settings = {"RAG_CHROMA__HOST": "127.0.0.1", "RAG_CHROMA__PORT": str(free_port())}
    if how == "option":
        result = run_cli(tmp_path, "serve", "--workers", "2", **settings)
    else:
        result = run_cli(tmp_path, "serve", RAG_SERVER__WORKERS="2", **settings)

    assert result.returncode == REFUSED, result.stderr
    assert "--workers 2 needs state shared by the processes" in result.stderr
    assert "RAG_REDIS__URL" in result.stderr
    assert "set RAG_CHROMA__HOST" not in result.stderr


def test_workers_with_embedded_chroma_are_refused(tmp_path: Path) -> None:
    result = run_cli(
        tmp_path, "serve", "--workers", "3", RAG_REDIS__URL=f"redis://127.0.0.1:{free_port()}/0"
    )

    assert result.returncode == REFUSED, result.stderr
    assert "set RAG_CHROMA__HOST" in result.stderr
    assert "Embedded Chroma (RAG_CHROMA__PATH) has one owner process" in result.stderr
    assert "RAG_REDIS__URL" not in result.stderr


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports."""
    while True:
        first = free_port()
        sockets = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()


def replica_ids(metrics: str) -> list[str]:
    return re.findall(r'rag_replica_info\{replica="([^"]+)"\} 1\.0', metrics)


def test_two_workers_share_one_port_each_guarded_and_stop_cleanly(
    tmp_path: Path,
    redis_server: RedisServer,
    fleet_catalog: FleetCatalog,
    fleet_upstream: ManagedProcess,
) -> None:
    metrics_port = free_port_run(WORKERS)
    settings = fleet_settings(fleet_catalog, fleet_upstream, redis_server, "workers-test:") | {
        "RAG_SERVER__METRICS_PORT": str(metrics_port),
        "RAG_SERVER__HEADER_TIMEOUT_S": "1",
        "RAG_SERVER__BODY_TIMEOUT_S": "1",
    }
    service = replica_process("workers", free_port(), settings, tmp_path, "--workers", "2")
    service.start()
    try:
        service.wait_ready()
        with service.client() as http:
            answer = http.post(
                "/rag/stream", params={"context": "shop:w"}, json={"query": "Do you ship?"},
                headers=Fleet.auth(KEY_A),
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
            assert "event: done" in answer.text
            # Each worker on a port of its own: two processes, neither the parent.
            ids = []
            for port in range(metrics_port, metrics_port + WORKERS):
                ids += replica_ids(http.get(f"http://127.0.0.1:{port}/metrics").text)
        pids = {int(replica.split("-")[-2]) for replica in ids}
        assert len(ids) == WORKERS
        assert len(pids) == WORKERS
        assert service.pid not in pids
        assert_guarded(service.port)
    finally:
        code = service.stop()
    assert code == 0, service.log_tail()
    for pid in pids:  # the parent waited for its workers
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert "Traceback" not in service.log_tail(100_000)


def assert_guarded(port: int) -> None:
    """The worker that takes a connection enforces the header and body time limits (1 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as silent:
        assert silent.recv(1024) == b""  # closed by the server, no answer
    with socket.create_connection(("127.0.0.1", port), timeout=30) as slow:
        head = (
            "POST /rag/stream?context=shop:s HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {KEY_A}\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n{"
        )
        slow.sendall(head.encode())
        reply = b""
        while chunk := slow.recv(4096):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 408"), reply
