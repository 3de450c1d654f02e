"""Keep-alive against the fault server: the body is read to its end after [DONE] so that the
connection goes back to the pool, within bounds; a pooled connection the server had closed is
retried once at once; the read timeout is per gap; all of it on uvloop too."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from rag_service.domain import Completed, RetryNotice
from rag_service.ports import UpstreamEvent
from rag_service.upstream import OpenAICompatibleUpstream
from tests.fixture_servers.fault_upstream import (
    AnswerStyle,
    Complete,
    Drop,
    FaultUpstream,
    Status,
    answer_text,
)
from tests.upstream.certificates import Certificates
from tests.upstream.conftest import (
    QUESTION,
    QUESTION_MESSAGES,
    REALISTIC_ENDING,
    Answer,
    ClientFactory,
    FakeTime,
    collect,
    settings_for,
    wait_until,
)
from tests.upstream.loopback_proxy import running_proxy

SEQUENTIAL_ANSWERS = 8


@pytest.mark.parametrize("terminator_delay_s", [0.0, 0.05])
async def test_sequential_answers_share_one_connection(
    make_client: ClientFactory, terminator_delay_s: float
) -> None:
    """The terminator in a write of its own after [DONE], at once or later (as over TLS)."""
    style = AnswerStyle(terminator_delay_s=terminator_delay_s)
    async with FaultUpstream(style=style) as upstream:
        client = make_client(upstream.base_url)
        for _ in range(SEQUENTIAL_ANSWERS):
            items = await collect(client.stream(QUESTION))
            assert items.text == upstream.answer_text(QUESTION_MESSAGES)
        assert upstream.request_count == SEQUENTIAL_ANSWERS
        assert upstream.connection_count == 1


async def test_a_client_asking_again_at_completed_finds_the_connection_idle(
    make_client: ClientFactory,
) -> None:
    """As the service's clients do: the next question leaves as soon as the answer is complete
    (its `done` event), not when ``answer`` returns. With the terminator 20 ms after [DONE]
    the connection must already be back in the pool by then."""
    async with FaultUpstream(style=AnswerStyle(terminator_delay_s=0.02)) as upstream:
        client = make_client(upstream.base_url)
        answers = []
        for _ in range(SEQUENTIAL_ANSWERS):
            answer, items, completed = start_answer(client)
            answers.append(answer)
            await completed.wait()
            assert items.text == upstream.answer_text(QUESTION_MESSAGES)
        await asyncio.gather(*answers)
        assert upstream.connection_count == 1


def start_answer(
    client: OpenAICompatibleUpstream,
) -> tuple[asyncio.Task[None], Answer, asyncio.Event]:
    """An answer running in a task: (the task, its items so far, set at its Completed)."""
    items = Answer()
    completed = asyncio.Event()

    def sink(item: UpstreamEvent) -> None:
        items.append(item)
        if isinstance(item, Completed):
            completed.set()

    return asyncio.create_task(client.answer(QUESTION, sink)), items, completed


async def test_an_answer_completes_before_a_late_terminator_and_its_connection_is_dropped(
    make_client: ClientFactory,
) -> None:
    """A terminator later than the drain's bound (min(read timeout, 2 s)): the answer is
    complete at [DONE], and the connection is closed rather than kept."""
    late = AnswerStyle(terminator_delay_s=60.0)
    async with FaultUpstream(style=late) as upstream:
        client = make_client(upstream.base_url, read_timeout_s=1.0)
        answer, items, completed = start_answer(client)
        await completed.wait()
        assert not answer.done()  # still reading towards the body's end
        await answer
        assert items.text == upstream.answer_text(QUESTION_MESSAGES)
        assert await wait_until(lambda: upstream.open_connections == 0)
        second = await collect(client.stream(QUESTION))
        assert isinstance(second.terminal, Completed)
        assert upstream.connection_count == 2


async def test_an_error_answer_read_to_its_end_keeps_the_connection(
    make_client: ClientFactory,
) -> None:
    async with FaultUpstream([Status(503), Status(429)]) as upstream:
        items = await collect(make_client(upstream.base_url).stream(QUESTION))
        assert [i.reason for i in items if isinstance(i, RetryNotice)] == [
            "status_503",
            "status_429",
        ]
        assert items.text == upstream.answer_text(QUESTION_MESSAGES)
        assert (upstream.request_count, upstream.connection_count) == (3, 1)


@pytest.mark.parametrize("reset", [False, True])
async def test_a_pooled_connection_the_server_closed_is_retried_once_at_once(
    make_client: ClientFactory, fake_time: FakeTime, reset: bool
) -> None:
    """The keep-alive race: the second request finds its pooled connection closed, with no
    byte of an answer. It goes again on a new connection: no backoff, no retry notice, no
    verdict for the breaker, no retry budget."""
    async with FaultUpstream([Complete(), Drop(reset=reset)]) as upstream:
        client = make_client(upstream.base_url, breaker={"failure_threshold": 1})
        await collect(client.stream(QUESTION))
        budget = client.budget.tokens
        items = await collect(client.stream(QUESTION))
        assert (upstream.request_count, upstream.connection_count) == (3, 2)
    assert not any(isinstance(item, RetryNotice) for item in items)
    done = items.terminal
    assert isinstance(done, Completed)
    assert done.attempts == 1
    assert items.text == upstream.answer_text(QUESTION_MESSAGES)
    assert fake_time.sleeps == []
    assert client.breaker.state.value == "closed"
    assert client.budget.tokens >= budget  # nothing spent (a retry would cost a whole token)


async def test_a_fresh_connection_closed_without_an_answer_takes_the_normal_retry(
    make_client: ClientFactory, fake_time: FakeTime
) -> None:
    async with FaultUpstream([Drop(reset=False)]) as upstream:
        items = await collect(make_client(upstream.base_url).stream(QUESTION))
        assert (upstream.request_count, upstream.connection_count) == (2, 2)
    assert [i.reason for i in items if isinstance(i, RetryNotice)] == ["connection_lost"]
    assert len(fake_time.sleeps) == 1


async def test_the_read_timeout_bounds_each_gap_not_the_answer(make_client: ClientFactory) -> None:
    """Tokens 0.25 s apart under a 1 s read timeout: 1.5 s in all, and never a stall."""
    paced = AnswerStyle(words=6, inter_token_delay_s=0.25)
    async with FaultUpstream(style=paced) as upstream:
        items = await collect(make_client(upstream.base_url, read_timeout_s=1.0).stream(QUESTION))
        assert upstream.request_count == 1
    assert not any(isinstance(item, RetryNotice) for item in items)
    assert items.text == answer_text(QUESTION_MESSAGES, paced)


def test_tls_through_a_proxy_and_keep_alive_on_uvloop(certificates: Certificates) -> None:
    """`rag-service serve` runs on uvloop: the CONNECT tunnel, TLS inside it, and the pool."""

    async def scenario() -> tuple[list[str], int, int]:
        async with (
            running_proxy() as proxy,
            FaultUpstream(
                ssl_context=certificates.localhost.server_context(), style=REALISTIC_ENDING
            ) as upstream,
        ):
            settings = settings_for(
                upstream.url_for("localhost"), ca_bundle=str(certificates.ca), proxy=proxy.url
            )
            client = OpenAICompatibleUpstream(settings)
            texts = [(await collect(client.stream(QUESTION))).text for _ in range(3)]
            await client.aclose()
            return texts, upstream.connection_count, len(proxy.forwarded_to(upstream.port))

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        texts, connections, tunnels = runner.run(scenario())
    assert texts == [answer_text(QUESTION_MESSAGES)] * 3
    assert (connections, tunnels) == (1, 1)


async def test_a_server_that_keeps_talking_after_done_loses_its_connection(
    make_client: ClientFactory,
) -> None:
    """After [DONE], comments (80 KiB) and no end of the body: the answer is complete all the
    same, and past the drain's bounds the connection is closed, not pooled."""
    connections = 0

    async def chatty(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for event in (
            b'data: {"choices":[{"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n',
            b"data: [DONE]\n\n",
            *[b": " + b"x" * 1021 + b"\n"] * 80,
        ):
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
        await reader.read()  # no terminator: the body ends only when the client hangs up
        writer.close()

    server = await asyncio.start_server(chatty, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        client = make_client(f"http://127.0.0.1:{port}/v1")
        for _ in range(2):
            items = await collect(client.stream(QUESTION))
            assert items.text == "hi"
            assert isinstance(items.terminal, Completed)
        assert connections == 2
