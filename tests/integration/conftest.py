"""Shared fixtures of the integration tests: one real local llama.cpp server per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixture_servers.local_llm_server import local_llm_server, local_llm_unavailable_reason


@pytest.fixture(scope="session")
def local_llm_url() -> Iterator[str]:
    """Base URL (``http://127.0.0.1:<port>/v1``) of the bundled model server, started once.

    Skips only when the ``local-llm`` extra is not installed; a server that is installed but
    fails to start is an error, with the server's output in the message.
    """
    reason = local_llm_unavailable_reason()
    if reason is not None:
        pytest.skip(f"local model server not available: {reason}")
    with local_llm_server() as base_url:
        yield base_url
