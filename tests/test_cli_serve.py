"""``rag-service serve`` (uvicorn.Server with the service's server config, no longer
``uvicorn.run``) when it cannot start: the start-up failure code, not a silent return."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from typer.testing import CliRunner

import rag_service.app
from rag_service.cli import app as cli
from rag_service.settings import Settings

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
    monkeypatch.setattr(rag_service.app, "create_app", lambda settings: plain_app)
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

    def create_app(settings: Settings) -> Any:
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
