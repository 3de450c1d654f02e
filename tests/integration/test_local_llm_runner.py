"""The subprocess runner of the local model server: readiness, failure reports, shutdown."""

from __future__ import annotations

import sys

import httpx
import pytest

from rag_service.errors import ServiceUnavailable
from tests.fixture_servers.local_llm_server import (
    LocalLlmProcess,
    local_llm_available,
    local_llm_unavailable_reason,
    running_local_llm,
)


def test_a_server_that_exits_at_once_is_reported_with_its_exit_code_and_output() -> None:
    crashing = [sys.executable, "-c", "import sys; print('model exploded'); sys.exit(3)"]
    server = LocalLlmProcess(command=crashing)
    server.start()
    with pytest.raises(ServiceUnavailable) as raised:
        server.wait_ready()
    assert "exited with code 3" in raised.value.message
    assert "model exploded" in raised.value.message


def test_a_server_that_never_answers_is_stopped_after_the_ready_timeout() -> None:
    silent = [sys.executable, "-c", "import time; print('loading', flush=True); time.sleep(60)"]
    server = LocalLlmProcess(command=silent, ready_timeout_s=0.5)
    server.start()
    with pytest.raises(ServiceUnavailable) as raised:
        server.wait_ready()
    assert "was not ready within 0.5 s" in raised.value.message
    assert "loading" in raised.value.message
    assert server._process is not None and server._process.poll() is not None


def test_availability_matches_the_reason() -> None:
    assert local_llm_available() == (local_llm_unavailable_reason() is None)


@pytest.mark.llm
async def test_async_runner_serves_the_model_and_stops_it_on_exit() -> None:
    if not local_llm_available():
        pytest.skip(f"local model server not available: {local_llm_unavailable_reason()}")
    async with running_local_llm() as base_url, httpx.AsyncClient(timeout=10) as client:
        models = (await client.get(f"{base_url}/models")).json()
        assert [model["id"] for model in models["data"]] == ["smollm2"]
    async with httpx.AsyncClient(timeout=2) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{base_url}/models")
