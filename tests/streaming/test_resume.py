"""GET /rag/stream/{stream_id}: replay after Last-Event-ID, ownership, unknown streams."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from rag_service.domain import TextDelta
from rag_service.streaming import StreamRegistry
from tests.fakes.upstream import completed
from tests.streaming.helpers import assert_error_shape, deltas, post_stream, resume, stream_id_of
from tests.streaming.sse_spec import SseEvent, parse_sse


async def finished_stream(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None
) -> tuple[str, list[SseEvent]]:
    parsed = parse_sse((await post_stream(client, headers=headers)).content)
    assert parsed.events[-1].type == "done"
    return stream_id_of(parsed), parsed.events


async def test_resume_without_last_event_id_replays_everything(
    client: httpx.AsyncClient,
) -> None:
    stream_id, first = await finished_stream(client)

    response = await resume(client, stream_id)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-store"
    replay = parse_sse(response.content)
    assert replay.items[0][0] == "retry"
    assert replay.events == first


async def test_resume_after_an_id_replays_only_later_events(client: httpx.AsyncClient) -> None:
    stream_id, first = await finished_stream(client)

    replay = parse_sse((await resume(client, stream_id, f"{stream_id}:3")).content)

    assert replay.events == first[3:]
    assert deltas(first[:3]) + deltas(replay.events) == deltas(first)


async def test_resume_after_the_last_id_sends_nothing_and_ends(
    client: httpx.AsyncClient,
) -> None:
    stream_id, first = await finished_stream(client)

    response = await resume(client, stream_id, f"{stream_id}:{len(first)}")

    assert response.status_code == 200
    assert parse_sse(response.content).events == []


@pytest.mark.parametrize(
    "make_id",
    [
        lambda sid: "someone-elses-stream-id:3",
        lambda sid: f"{sid}x:3",
        lambda sid: f"{sid}:",
        lambda sid: f"{sid}:-1",
        lambda sid: f"{sid}:three",
        lambda sid: f"{sid}:999",  # ahead of the stream
        lambda sid: "3",
    ],
)
async def test_bad_last_event_id_is_400(
    client: httpx.AsyncClient, make_id: Callable[[str], str]
) -> None:
    stream_id, _ = await finished_stream(client)

    response = await resume(client, stream_id, make_id(stream_id))

    error = assert_error_shape(response, 400)
    assert error["code"] == "invalid_request"


@pytest.mark.parametrize("stream_id", ["A" * 22, "nope", "not.a:stream-id"])
async def test_unknown_stream_is_404(client: httpx.AsyncClient, stream_id: str) -> None:
    response = await resume(client, stream_id)

    error = assert_error_shape(response, 404)
    assert error["code"] == "not_found"


async def test_only_the_creator_may_resume(client: httpx.AsyncClient) -> None:
    stream_id, first = await finished_stream(client, headers={"X-Client": "alice"})

    other = await resume(client, stream_id, headers={"X-Client": "bob"})
    anonymous = await resume(client, stream_id)
    owner = await resume(client, stream_id, headers={"X-Client": "alice"})

    assert assert_error_shape(other, 403)["code"] == "forbidden"
    assert assert_error_shape(anonymous, 403)["code"] == "forbidden"
    assert parse_sse(owner.content).events == first


async def test_anonymous_stream_cannot_be_resumed_by_a_keyed_client(
    client: httpx.AsyncClient,
) -> None:
    stream_id, _ = await finished_stream(client)

    response = await resume(client, stream_id, headers={"X-Client": "alice"})

    assert_error_shape(response, 403)


@pytest.mark.parametrize("stream_overrides", [{"replay_buffer_events": 16}])
async def test_events_fallen_out_of_the_replay_window_answer_404(
    client: httpx.AsyncClient, registry: StreamRegistry
) -> None:
    session = registry.open(context_id="c", principal=None, started_at=0.0)
    session.publish_meta({"stream_id": session.stream_id})
    for index in range(40):
        session.apply(TextDelta(f"<{index}>"))
    session.apply(completed())
    registry.detach(session)
    first_kept = session.first_seq
    assert first_kept > 1
    sid = session.stream_id

    from_start = await resume(client, sid)
    too_old = await resume(client, sid, f"{sid}:{first_kept - 2}")
    oldest_ok = parse_sse((await resume(client, sid, f"{sid}:{first_kept - 1}")).content)

    assert assert_error_shape(from_start, 404)["details"]["reason"] == "replay_window_exceeded"
    assert_error_shape(too_old, 404)
    assert oldest_ok.events[0].last_event_id == f"{sid}:{first_kept}"
    assert oldest_ok.events[-1].type == "done"
    assert len(oldest_ok.events) == session.last_seq - first_kept + 1
