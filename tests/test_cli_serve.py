"""``rag-service serve`` (uvicorn.Server with the service's server config, no longer
``uvicorn.run``) when it cannot start: the start-up failure code, not a silent return; with
``--workers`` too (rag_service/server/worker_pool.py; tests/test_worker_pool.py has the pool's
own)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import pytest
import uvicorn.config
from typer.testing import CliRunner

import rag_service.app
from rag_service.cli import app as cli
from rag_service.settings import Settings
from tests.conftest import free_port, run_cli

SERVER_START_FAILED = 3  # uvicorn.run's own exit code for a failed start-up


async def plain_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Stands in for the service: the start-up fails before any request reaches it."""
    if scope["type"] == "lifespan":
        message = await receive()
        assert message["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.complete"})


def test_a_port_in_use_exits_with_the_start_up_failure_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rag_service.app, "create_app", lambda settings, **_: plain_app)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        result = CliRunner().invoke(cli, ["serve", "--port", str(port), "--log-level", "error"])

    assert result.exit_code == SERVER_START_FAILED, result.output


def serve_on_busy_port(
    monkeypatch: pytest.MonkeyPatch, arguments: list[str]
) -> tuple[list[Settings], int]:
    """``serve`` with ``arguments`` (``{port}`` replaced by a port in use): the Settings that
    reached ``create_app`` and the exit code."""
    seen: list[Settings] = []

    def create_app(settings: Settings, **_: Any) -> Any:
        seen.append(settings)
        return plain_app

    monkeypatch.setattr(rag_service.app, "create_app", create_app)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # The settings name the busy port, unless the arguments do (then another one).
        given = any("{port}" in argument for argument in arguments)
        monkeypatch.setenv("RAG_SERVER__PORT", str(port + 1 if given else port))
        argv = [a.replace("{port}", str(port)) for a in arguments]
        result = CliRunner().invoke(cli, ["serve", "--log-level", "error", *argv])
    assert result.exit_code == SERVER_START_FAILED, result.output  # so it did try that port
    return seen, port


def test_the_address_comes_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_SERVER__HOST", "127.0.0.1")

    seen, port = serve_on_busy_port(monkeypatch, [])

    assert (seen[0].server.host, seen[0].server.port) == ("127.0.0.1", port)


def test_host_and_port_options_override_the_settings_the_app_gets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAG_SERVER__HOST", "192.0.2.1")  # not an address of this machine

    seen, port = serve_on_busy_port(monkeypatch, ["--host", "127.0.0.1", "--port", "{port}"])

    assert (seen[0].server.host, seen[0].server.port) == ("127.0.0.1", port)


def test_no_client_keys_on_a_public_address_refuses_to_start_with_the_reason() -> None:
    """Refused before anything loads or binds: no model, no store, no socket."""
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--log-level", "error"])

    assert result.exit_code == 2, result.output
    assert "refusing to start" in result.output
    assert "refusing to listen on 0.0.0.0 without client keys" in result.output
    assert "RAG_AUTH__DISABLED=true" in result.output


async def app_that_logs_then_fails(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Logs at INFO through the service's logger during start-up, then fails the start-up (so
    that serve returns)."""
    if scope["type"] == "lifespan":
        await receive()
        logging.getLogger("rag_service").info("start-up summary goes here")
        await send({"type": "lifespan.startup.failed", "message": "stop the test server"})


def test_serve_prints_the_services_own_info_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """The start-up summary is an INFO line of the ``rag_service`` logger: serve wires that
    logger to uvicorn's handler, else Python would print nothing below WARNING."""
    monkeypatch.setattr(
        rag_service.app, "create_app", lambda settings, **_: app_that_logs_then_fails
    )

    result = CliRunner().invoke(cli, ["serve", "--port", str(free_port())])

    assert result.exit_code == SERVER_START_FAILED, result.output
    assert "INFO:     start-up summary goes here" in result.output
    assert "rag_service" not in uvicorn.config.LOGGING_CONFIG["loggers"]  # a copy, not a patch


def test_workers_whose_start_up_fails_exit_with_the_start_up_failure_code_and_say_why(
    tmp_path: Path,
) -> None:
    """``serve --workers 2`` with a configuration that only the app's start-up rejects (the
    upstream's CA bundle is missing): each worker fails in its lifespan, and the parent exits
    with 3 and says so, where uvicorn's multi-process mode exited 0. Redis and the Chroma
    server need not answer: the service starts without them (degraded)."""
    result = run_cli(
        tmp_path,
        "serve",
        "--workers",
        "2",
        "--port",
        str(free_port()),
        RAG_REDIS__URL=f"redis://127.0.0.1:{free_port()}/0",
        RAG_CHROMA__HOST="127.0.0.1",
        RAG_CHROMA__PORT=str(free_port()),
        RAG_UPSTREAM__BASE_URL=f"https://127.0.0.1:{free_port()}/v1",
        RAG_UPSTREAM__CA_BUNDLE=str(tmp_path / "missing.pem"),
    )

    assert result.returncode == SERVER_START_FAILED, result.stderr
    assert "failed to start: a worker (pid" in result.stderr
    assert "exited with code 3 before it was serving" in result.stderr
    assert "RAG_UPSTREAM__CA_BUNDLE" in result.stderr  # the worker's own reason, logged
