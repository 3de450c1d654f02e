"""``server_config`` raises the soft open-file limit to fit the connection caps, and warns when
the hard limit is too low. Each case runs in a child process started with lowered limits, so
the test process keeps its own."""

from __future__ import annotations

import resource
import subprocess
import sys

from rag_service.server.open_files import OTHER_FILES

CHILD = """
import resource
from rag_service.server import server_config
from rag_service.settings import ServerSettings, Settings, UpstreamSettings

async def app(scope, receive, send): ...

settings = Settings(
    server=ServerSettings(max_connections=600), upstream=UpstreamSettings(max_connections=400)
)
server_config(app, settings)
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""
NEEDED = 600 + 400 + OTHER_FILES


def run_with_limits(soft: int, hard: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD],
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_a_soft_limit_below_the_caps_is_raised_to_fit_them() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard >= NEEDED, "the test needs a hard open-file limit that fits the caps"

    child = run_with_limits(256, hard)

    assert int(child.stdout) == NEEDED
    assert "open-file limit" not in child.stderr


def test_a_hard_limit_below_the_caps_is_warned_about() -> None:
    child = run_with_limits(256, 512)

    assert int(child.stdout) == 512
    assert "open-file limit (512, hard limit 512) is below the" in child.stderr
