"""``rag-service ask`` as a process against the real app: the answer's exact text on stdout, the
status on stderr, and its exit status (0 answered, 1 failed, 2 refused)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from rag_service.cli.ask import StatusLine
from tests.client.conftest import CLIENT_KEY, QUESTION, LiveService, async_client, running_service
from tests.conftest import REPO, free_port
from tests.fixture_servers.fault_plan import AnswerStyle, Complete, ErrorEvent
from tests.fixture_servers.fault_proxy import CutPlan
from tests.upstream.conftest import wait_until

CLI_LIMIT_S = 120.0  # a process start on a loaded machine; the bound only stops a hang


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


async def ask(url: str, *args: str, key: str | None = CLIENT_KEY) -> Run:
    """``rag-service ask QUESTION --url URL ARGS`` as a process (it does not block the loop that
    serves it)."""
    process = await start_ask(url, *args, key=key)
    async with asyncio.timeout(CLI_LIMIT_S):
        stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return Run(process.returncode, stdout.decode(), stderr.decode())


async def start_ask(url: str, *args: str, key: str | None) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env |= {"PYTHONPATH": str(REPO), "COLUMNS": "200"}
    if key is not None:
        env["RAG_CLIENT_KEY"] = key
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rag_service",
        "ask",
        QUESTION,
        "--url",
        url,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def reference_text(service: LiveService) -> str:
    async with async_client(service.direct_url) as client:
        return (await client.answer(QUESTION, context="reference")).text


async def test_ask_prints_the_answer_and_its_status(service: LiveService) -> None:
    reference = await reference_text(service)
    run = await ask(service.url, "--context", "shop:cli", "--verbose")
    assert run.code == 0, run.stderr
    assert run.stdout == reference + "\n"
    lines = run.stderr.splitlines()
    assert lines[0] == "[connected]"
    assert lines[1].startswith("[context refreshed (catalog v1); sources: ")
    assert lines[-1].startswith('[done: {"finish_reason": "stop"')


async def test_ask_reconnects_after_a_drop_and_prints_the_exact_text(
    service: LiveService,
) -> None:
    reference = await reference_text(service)
    service.proxy.cut_next(CutPlan(after_events=6))
    run = await ask(service.url, "--context", "shop:cli-drop")
    assert run.code == 0, run.stderr
    assert run.stdout == reference + "\n"
    assert "[reconnecting (attempt 1 of 10), next try in " in run.stderr
    assert "[connected: resumed stream " in run.stderr
    assert service.proxy.cuts == 1


async def test_ask_exits_2_when_refused(service: LiveService) -> None:
    run = await ask(service.url, key="wrong-key")
    assert run.code == 2
    assert run.stdout == ""
    assert "[refused: 401 unauthorized: " in run.stderr
    assert service.proxy.connections == 1  # not retried


async def test_ask_exits_1_when_the_service_cannot_be_reached() -> None:
    run = await ask(f"http://127.0.0.1:{free_port()}", "--max-attempts", "1")
    assert run.code == 1
    assert "[failed: could not reach the service after 1 retries: ConnectError" in run.stderr
    assert "is the service running at http://127.0.0.1:" in run.stderr


async def test_ask_exits_1_when_the_answer_fails(service: LiveService) -> None:
    service.upstream.set_plan([ErrorEvent(after_events=3, named=False)], default=Complete())
    run = await ask(service.url, "--context", "shop:cli-error")
    assert run.code == 1
    assert len(run.stdout.split()) == 3  # the text before the failure
    assert "[error upstream_protocol_error: " in run.stderr
    assert "(retrying will not help)" in run.stderr


async def test_ask_exits_130_when_interrupted(tmp_path: Path) -> None:
    slow = AnswerStyle(words=400, inter_token_delay_s=0.05)  # 20 s: interrupted long before
    async with running_service(tmp_path, style=slow) as service:
        process = await start_ask(service.url, "--context", "shop:cli-interrupted", key=CLIENT_KEY)
        assert process.stdout is not None
        async with asyncio.timeout(CLI_LIMIT_S):
            first_text = await process.stdout.read(8)  # the answer is streaming
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(CLI_LIMIT_S):
            rest, stderr = await process.communicate()
        assert process.returncode == 130
        assert "[interrupted]" in stderr.decode()
        assert 0 < len((first_text + rest).decode().split()) < 400  # stopped mid-answer
        assert await wait_until(lambda: service.proxy.open_connections == 0)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_status_is_rewritten_until_the_text_starts() -> None:
    out, err = Terminal(), Terminal()
    status = StatusLine(out, err)
    status.show("connected")
    status.show("context fresh")
    status.text("The tent ")
    status.show("reconnecting (attempt 1 of 10)")
    status.text("costs 50 EUR.")
    status.end()
    assert out.getvalue() == "The tent costs 50 EUR.\n"
    # In place until the text starts; cleared for it; then on a line below the text.
    assert err.getvalue() == (
        "\r\x1b[K[connected]\r\x1b[K[context fresh]\r\x1b[K"
        "\n\r\x1b[K[reconnecting (attempt 1 of 10)]\r\x1b[K"
    )


def test_into_a_pipe_every_status_is_a_line() -> None:
    out, err = io.StringIO(), io.StringIO()
    status = StatusLine(out, err)
    status.show("connected")
    status.text("The tent")
    status.show("reconnecting (attempt 1 of 10)")
    status.end()
    assert out.getvalue() == "The tent\n"
    assert err.getvalue() == "[connected]\n[reconnecting (attempt 1 of 10)]\n"
