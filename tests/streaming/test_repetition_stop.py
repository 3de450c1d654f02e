"""An answer that loops ends at its first repeated block: POST /rag/stream through the real
router and app against a scripted upstream that repeats a paragraph until it is cancelled."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from rag_service.domain import NamedEvent, RetryNotice, TextDelta
from rag_service.settings import AnswerSettings
from rag_service.streaming import AnswerRequest, StreamDeps, StreamRegistry, start_answer
from rag_service.streaming.repetition import DEFAULT_HOLD_CHARS
from tests.fakes.upstream import Hold, ScriptedUpstream, Step, completed
from tests.streaming.helpers import deltas, post_stream, resume, stream_id_of
from tests.streaming.sse_spec import parse_sse

WAIT_LIMIT_S = 10.0
PARAGRAPH = (
    "Returns are free within Germany. You have 30 days from delivery to send unused products "
    "back with their tags.\n\n"
)


def looping_script(rounds: int = 4, *, then_hold: bool = True) -> list[Step]:
    """The paragraph ``rounds`` times in word-sized deltas; then (``then_hold``) an upstream
    that would go on until cancelled, and its own end ("length", as at max_tokens)."""
    words = [w + " " for w in (PARAGRAPH * rounds).split(" ") if w]
    steps: list[Step] = [TextDelta(word) for word in words]
    if then_hold:
        steps.append(Hold())
    steps.append(completed("length"))
    return steps


def assert_answer_is_one_round(text: str) -> None:
    """The first round whole, then at most the few characters of the copy that went out
    before it was long enough to hold."""
    assert text.startswith(PARAGRAPH.rstrip(" "))
    assert len(text) < len(PARAGRAPH) + DEFAULT_HOLD_CHARS + 1
    assert PARAGRAPH.count("Returns are free") == 1
    assert text.count("Returns are free") == 1


async def test_a_loop_ends_with_done_repetition_and_cancels_the_upstream(
    client: httpx.AsyncClient, upstream: ScriptedUpstream, registry: StreamRegistry
) -> None:
    upstream.script = looping_script()

    parsed = parse_sse((await post_stream(client)).content)

    events = parsed.events
    assert events[0].type == "meta"
    assert events[-1].type == "done"
    done = events[-1].json()
    assert done["finish_reason"] == "repetition"
    assert done["usage"] is None
    assert done["attempts"] == 1
    assert_answer_is_one_round(deltas(events))
    # The upstream was still "generating" (held) and was cancelled, not left to run out.
    await asyncio.wait_for(upstream.closed_event.wait(), WAIT_LIMIT_S)
    assert upstream.closed_early == 1
    assert upstream.completed_streams == 0


@pytest.fixture
def looping(upstream: ScriptedUpstream) -> ScriptedUpstream:
    upstream.script = looping_script()
    return upstream


async def test_a_resume_after_the_stop_gives_the_same_events(
    client: httpx.AsyncClient, looping: ScriptedUpstream
) -> None:
    first = parse_sse((await post_stream(client)).content)
    stream_id = stream_id_of(first)

    again = parse_sse((await resume(client, stream_id)).content)
    middle = first.events[2].last_event_id
    rest = parse_sse((await resume(client, stream_id, middle)).content)

    assert again.events == first.events
    assert deltas(first.events[:3] + rest.events) == deltas(first.events)
    assert rest.events[-1].json()["finish_reason"] == "repetition"


async def test_retries_before_the_loop_count_in_done(
    client: httpx.AsyncClient, looping: ScriptedUpstream
) -> None:
    notice = RetryNotice(attempt=2, max_attempts=5, delay_s=0.0, reason="stream_cut")
    looping.script = [notice, *looping.script]

    events = parse_sse((await post_stream(client)).content).events

    assert [e.type for e in events][:2] == ["meta", "retry"]
    assert events[-1].json()["attempts"] == 2
    assert events[-1].json()["finish_reason"] == "repetition"


async def test_an_answer_that_ends_by_itself_is_untouched(
    client: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    upstream.script = looping_script(rounds=1, then_hold=False)

    events = parse_sse((await post_stream(client)).content).events

    assert deltas(events) == PARAGRAPH.rstrip(" ") + " "
    assert events[-1].json()["finish_reason"] == "length"
    assert upstream.closed_early == 0


async def test_off_in_settings_passes_the_loop_through(
    client: httpx.AsyncClient, upstream: ScriptedUpstream, deps: StreamDeps
) -> None:
    deps.settings.answer = AnswerSettings(repetition_min_chars=0)
    upstream.script = looping_script(then_hold=False)

    events = parse_sse((await post_stream(client)).content).events

    assert deltas(events).count("Returns are free") == 4
    assert events[-1].json()["finish_reason"] == "length"


async def test_the_client_stop_still_cancels_a_guarded_answer(
    deps: StreamDeps, upstream: ScriptedUpstream, registry: StreamRegistry
) -> None:
    """The stop's own cancellation (a timeout rescheduled to now) must not swallow another."""
    upstream.script = [TextDelta("Checking the catalog"), Hold(), completed()]
    session = await start_answer(deps, AnswerRequest("c-1", "Any tents?"), principal=None)
    await asyncio.wait_for(upstream.holding.wait(), WAIT_LIMIT_S)

    assert registry.cancel(session)
    await asyncio.wait_for(upstream.closed_event.wait(), WAIT_LIMIT_S)
    registry.detach(session)

    events = session.read_events(0, 100)
    assert [e.name for e in events if isinstance(e, NamedEvent)][-1] == "error"
    assert session.task is not None
    await asyncio.wait_for(asyncio.wait([session.task]), WAIT_LIMIT_S)
    assert session.task.cancelled()
