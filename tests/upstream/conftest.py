"""Fixtures of the upstream client tests: fake time, a fault server, a client factory, TLS
certificates, and no proxy variables from the developer's shell."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from rag_service.domain import ChatMessage, ChatRequest, Completed, Failed, TextDelta
from rag_service.errors import RagServiceError
from rag_service.ports import UpstreamEvent
from rag_service.settings import UpstreamSettings
from rag_service.upstream import CircuitBreaker, OpenAICompatibleUpstream, RetryBudget
from tests.fixture_servers.fault_upstream import AnswerStyle, FaultUpstream, answer_text
from tests.upstream.certificates import Certificates, make_certificates

QUESTION = ChatRequest(messages=(ChatMessage("user", "Do the boots come in size 46?"),))
QUESTION_MESSAGES = [{"role": "user", "content": "Do the boots come in size 46?"}]
QUESTION_ANSWER = answer_text(QUESTION_MESSAGES)  # the fault server's, in its default style
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
# As a real server over TLS: the chunked terminator in a read of its own, after [DONE].
REALISTIC_ENDING = AnswerStyle(terminator_delay_s=0.05)


@pytest.fixture(autouse=True)
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy set in the shell would carry the tests' loopback requests (or refuse them)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    made = make_certificates(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("no `openssl` command to make the test certificates with")
    return made


class FakeTime:
    """A clock that only moves when the code under test sleeps; records every sleep."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def settings_for(base_url: str, **overrides: Any) -> UpstreamSettings:
    """Settings aimed at ``base_url``; nested groups given as dicts update the defaults."""
    base = UpstreamSettings(base_url=base_url, read_timeout_s=2.0, connect_timeout_s=2.0)
    data = base.model_dump()
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return UpstreamSettings.model_validate(data)


ClientFactory = Callable[..., OpenAICompatibleUpstream]


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def make_client(fake_time: FakeTime) -> AsyncIterator[ClientFactory]:
    """Builds clients on fake time and a seeded rng; closes them after the test."""
    clients: list[OpenAICompatibleUpstream] = []

    def build(base_url: str, *, seed: int = 7, **overrides: Any) -> OpenAICompatibleUpstream:
        settings = settings_for(base_url, **overrides)
        client = OpenAICompatibleUpstream(
            settings,
            rng=random.Random(seed),
            clock=fake_time.clock,
            sleep=fake_time.sleep,
            budget=RetryBudget(settings.budget, clock=fake_time.clock),
            breaker=CircuitBreaker(
                settings.breaker, clock=fake_time.clock, rng=random.Random(seed + 1)
            ),
        )
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.aclose()


@pytest.fixture
async def upstream() -> AsyncIterator[FaultUpstream]:
    async with FaultUpstream() as server:
        yield server


class Answer(list[UpstreamEvent]):
    """A client's stream, collected: its items, the text of its deltas, its one terminal item
    and, for a failed stream, its error."""

    @property
    def text(self) -> str:
        return "".join(item.text for item in self if isinstance(item, TextDelta))

    @property
    def terminal(self) -> Completed | Failed:
        last = self[-1]
        assert isinstance(last, Completed | Failed)
        assert sum(isinstance(item, Completed | Failed) for item in self) == 1
        return last

    @property
    def error(self) -> RagServiceError:
        """The error the stream ended with; it must have ended with ``Failed``."""
        failed = self.terminal
        assert isinstance(failed, Failed), failed
        return failed.error


async def collect(stream: AsyncIterator[UpstreamEvent]) -> Answer:
    return Answer([item async for item in stream])


async def wait_until(condition: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    """Whether ``condition()`` became true within ``timeout_s`` (polled every 10 ms)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.01)
    return condition()
