"""A looping answer through the OpenAI facade: cut at its repeated block, finish_reason "stop"
(OpenAI clients know no "repetition"); the native stream of the same id says "repetition"."""

from __future__ import annotations

import openai

from rag_service.domain import TextDelta
from rag_service.streaming.repetition import DEFAULT_HOLD_CHARS
from tests.app.conftest import client_auth
from tests.fakes.upstream import Hold, Step, completed
from tests.openai_compat.conftest import LiveService, user_turn
from tests.streaming.sse_spec import parse_sse

PARAGRAPH = "The Tents model 0 costs 50.00 EUR and ships free within Germany from 75 EUR.\n"


def loop_forever() -> list[Step]:
    words = [w + " " for w in (PARAGRAPH * 5).split(" ") if w]
    return [*(TextDelta(w) for w in words), Hold(), completed("length")]


def assert_one_round(text: str) -> None:
    assert text.startswith(PARAGRAPH)
    assert len(text) < len(PARAGRAPH) + DEFAULT_HOLD_CHARS
    assert text.count("costs 50.00 EUR") == 1


async def test_a_streamed_loop_ends_with_stop_and_no_repeated_block(
    service: LiveService, sdk: openai.AsyncOpenAI
) -> None:
    service.upstream.script = loop_forever()

    stream = await sdk.chat.completions.create(model="shop-bot", messages=user_turn(), stream=True)
    chunks = [chunk async for chunk in stream]

    assert_one_round("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
    assert chunks[-1].choices[0].finish_reason == "stop"
    stream_id = (chunks[0].model_extra or {})["rag"]["stream_id"]
    async with service.http() as http:
        native = parse_sse(
            (await http.get(f"/rag/stream/{stream_id}", headers=client_auth())).content
        )
    assert native.events[-1].json()["finish_reason"] == "repetition"


async def test_a_non_streamed_loop_is_one_completion_with_stop(
    service: LiveService, sdk: openai.AsyncOpenAI
) -> None:
    service.upstream.script = loop_forever()

    completion = await sdk.chat.completions.create(model="shop-bot", messages=user_turn())

    assert_one_round(completion.choices[0].message.content or "")
    assert completion.choices[0].finish_reason == "stop"
