"""`rag-service local-llm` as a real subprocess: it serves /v1/models and streams a chat answer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from rag_service.cli.local_llm import EXIT_CONFIGURATION_ERROR, serve_local_llm
from tests.fixture_servers.local_llm_server import (
    LOOPBACK,
    LocalLlmProcess,
    free_loopback_port,
    local_llm_unavailable_reason,
)
from tests.streaming.sse_spec import iter_sse_events

CONSOLE_SCRIPT = Path(sys.executable).with_name("rag-service")


def cli_command(*args: str) -> list[str]:
    """The installed console script, or the same entry point through the interpreter."""
    if CONSOLE_SCRIPT.exists():
        return [str(CONSOLE_SCRIPT), *args]
    return [sys.executable, "-c", "from rag_service.cli import main; main()", *args]


needs_local_llm = pytest.mark.skipif(
    local_llm_unavailable_reason() is not None,
    reason=f"local model server not available: {local_llm_unavailable_reason()}",
)


@pytest.mark.llm
@needs_local_llm
def test_cli_local_llm_serves_models_and_streams_an_answer() -> None:
    port = free_loopback_port()
    command = cli_command("local-llm", "--host", LOOPBACK, "--port", str(port))
    server = LocalLlmProcess(port, command=command)
    server.start()
    try:
        server.wait_ready()
        models = httpx.get(f"{server.base_url}/models", timeout=10).json()
        assert [model["id"] for model in models["data"]] == ["smollm2"]
        body = {
            "model": "smollm2",
            "stream": True,
            "messages": [{"role": "user", "content": "Say hello."}],
            "temperature": 0,
            "seed": 42,
            "max_tokens": 8,
        }
        with httpx.stream(
            "POST", f"{server.base_url}/chat/completions", json=body, timeout=60
        ) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            data = [event.data for event in iter_sse_events(r)]
        assert data[-1] == "[DONE]"
        text = "".join(json.loads(d)["choices"][0]["delta"].get("content") or "" for d in data[:-1])
        assert text.strip()
    finally:
        server.stop()


def test_cli_local_llm_with_a_missing_model_file_exits_2_with_a_clear_message(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nope.gguf"
    command = cli_command(
        "local-llm", "--port", str(free_loopback_port()), "--model-path", str(missing)
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == EXIT_CONFIGURATION_ERROR
    expected = f"model file not found: {missing}"
    if local_llm_unavailable_reason() is not None:  # then the missing extra is reported first
        expected = "pip install 'rag-service[local-llm]'"
    assert expected in result.stderr


@pytest.mark.llm
@needs_local_llm
def test_serve_local_llm_rejects_a_file_that_is_not_a_model(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file")
    code = serve_local_llm(host=LOOPBACK, port=free_loopback_port(), model_path=bogus)
    assert code == EXIT_CONFIGURATION_ERROR
