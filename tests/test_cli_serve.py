"""``rag-service serve`` (uvicorn.Server with the service's server config, no longer
``uvicorn.run``) when it cannot start: the start-up failure code, not a silent return."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from typer.testing import CliRunner

import rag_service.app
from rag_service.cli import app as cli

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
