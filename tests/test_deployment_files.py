"""compose.yaml, the Dockerfile and deploy/nginx.conf, checked without Docker (none on the
machines this runs on): every command is one the CLI parses, every RAG_* variable one the
settings know, the fleet's replicas have the shared state ``serve --workers`` asks for, each
long-running service has a health check, and the load balancer has no sticky sessions."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml  # type: ignore[import-untyped]  # (no stubs installed; PyYAML comes with chromadb)

from rag_service.cli import app as cli
from rag_service.cli.commands import _shared_state_missing
from rag_service.cli.settings_doc import render
from rag_service.settings import Settings
from tests.conftest import REPO, chroma_executable

COMPOSE = REPO / "compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
NGINX = REPO / "deploy" / "nginx.conf"
SERVICE_IMAGE = "rag-service"  # images built from the Dockerfile (rag-service, rag-service-llm)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def setting_names() -> set[str]:
    return set(re.findall(r"^# (RAG_[A-Z0-9_]+)=", render(), flags=re.MULTILINE))


def dockerfile_env() -> dict[str, str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    runtime = text.rsplit("\nFROM ", 1)[1]  # the final stage
    env: dict[str, str] = {}
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            env |= dict(re.findall(r"(\w+)=(\S+)", line))
    return env


def dockerfile_command() -> list[str]:
    entrypoint = re.search(r"^ENTRYPOINT (\[.*\])$", DOCKERFILE.read_text(), re.MULTILINE)
    command = re.search(r"^CMD (\[.*\])$", DOCKERFILE.read_text(), re.MULTILINE)
    assert entrypoint and command
    return [*json.loads(entrypoint.group(1)), *json.loads(command.group(1))]


def parse_cli(arguments: list[str]) -> None:
    """Parse ``rag-service ARGUMENTS`` as the CLI would, without running the command."""
    group = typer.main.get_command(cli)
    name, *rest = arguments
    command = group.get_command(group.make_context("rag-service", [name]), name)  # type: ignore[attr-defined]
    assert command is not None, f"no rag-service command {name!r}"
    command.make_context(name, list(rest))


def substituted(value: str) -> str:
    """Compose's ${NAME:?message} / ${NAME:-default} with a value, as a user would give."""
    return re.sub(r"\$\{(\w+)[^}]*\}", lambda m: f"value-of-{m.group(1).lower()}", value)


def test_compose_parses_and_every_long_running_service_has_a_health_check() -> None:
    services = compose()["services"]

    assert set(services) == {"redis", "chroma", "llm", "ingest", "rag", "lb"}
    for name, service in services.items():
        if name != "ingest":  # one-shot: runs, then exits
            assert service["healthcheck"]["test"], name
    assert services["rag"]["deploy"]["replicas"] >= 2


def test_every_rag_variable_is_a_setting() -> None:
    known = setting_names()
    names = set(dockerfile_env())
    for service in compose()["services"].values():
        names |= set(service.get("environment") or {})

    unknown = {name for name in names if name.startswith("RAG_")} - known

    assert not unknown


def test_the_replicas_settings_validate_and_have_the_shared_state_of_a_fleet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rag = compose()["services"]["rag"]
    for name, value in (dockerfile_env() | rag["environment"]).items():
        if name.startswith("RAG_"):
            monkeypatch.setenv(name, substituted(str(value)))

    settings = Settings()

    assert _shared_state_missing(settings) == ""
    assert settings.upstream.base_url.startswith("http://llm:8088")
    command = rag["command"]
    assert settings.chroma.port == int(compose()["services"]["chroma"]["command"][-1])
    assert command[command.index("--port") + 1] == "8000"


def test_every_command_of_the_service_image_is_one_the_cli_parses() -> None:
    parse_cli(dockerfile_command()[1:])
    for name, service in compose()["services"].items():
        if not service.get("image", "").startswith(SERVICE_IMAGE) or "entrypoint" in service:
            continue
        parse_cli([str(part) for part in service["command"]])
        assert name in {"llm", "ingest", "rag"}


def test_the_chroma_server_runs_as_the_tests_run_it() -> None:
    chroma = compose()["services"]["chroma"]
    assert chroma["entrypoint"] == ["chroma"]
    assert chroma["command"][0] == "run"
    help_text = subprocess.run(
        [chroma_executable(), "run", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for option in (part for part in chroma["command"] if part.startswith("--")):
        assert option in help_text


def test_the_load_balancer_spreads_requests_without_sticky_sessions() -> None:
    lb = compose()["services"]["lb"]
    config = NGINX.read_text()
    active = "\n".join(line.split("#", 1)[0] for line in config.splitlines())

    assert any(volume.startswith("./deploy/nginx.conf:") for volume in lb["volumes"])
    assert re.search(r"server rag:8000 resolve", active)
    for sticky in ("ip_hash", "hash ", "sticky", "least_conn"):
        assert sticky not in active
    assert "proxy_buffering off;" in active  # SSE events pass at once


def test_the_image_pins_the_torch_the_project_pins() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    pinned = re.search(r'"torch==([\d.]+)"', pyproject)
    assert pinned is not None
    assert f'"torch=={pinned.group(1)}" --index-url https://download.pytorch.org/whl/cpu' in (
        DOCKERFILE.read_text()
    )


def test_the_image_runs_as_a_user_with_a_writable_data_directory() -> None:
    text = DOCKERFILE.read_text()
    env = dockerfile_env()
    assert re.search(r"^USER rag$", text, re.MULTILINE)
    for setting in ("RAG_CHROMA__PATH", "RAG_INGEST__LOCK_FILE"):
        assert Path(env[setting]).is_relative_to("/var/lib/rag"), setting  # chown rag
