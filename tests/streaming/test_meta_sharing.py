"""The ``meta`` event of every stream of a context holds one shared copy of its sources JSON:
the bytes a client gets are those of ``meta_payload``, and thousands of streams do not each
keep their own ~0.5 KB of sources."""

from __future__ import annotations

import dataclasses
import gc
import json
import tracemalloc

from rag_service.domain import Passage, ResolvedContext
from rag_service.settings import StreamSettings
from rag_service.streaming import StreamRegistry, meta_payload
from rag_service.streaming.answer import SourceLists, meta_json
from rag_service.streaming.sse_format import encode_event, to_json
from tests.fakes.resolver import sample_context
from tests.streaming.helpers import native_bytes

SESSIONS = 300
# As a product search returns them: five documents with catalog-length titles.
CATALOG_PASSAGES = tuple(
    Passage(
        id=f"p-{i}#0",
        doc_id=f"product-{i}",
        title=f"Trekking boot model {i}, waterproof leather, Vibram sole, wide fit",
        text="...",
        score=0.9 - i / 10,
    )
    for i in range(5)
)


def catalog_context() -> ResolvedContext:
    return dataclasses.replace(sample_context(), passages=CATALOG_PASSAGES)


def test_the_parts_join_to_the_payloads_json() -> None:
    context = catalog_context()
    sources = SourceLists()(context)

    parts = meta_json("stream-1", context, sources)

    assert b"".join(parts) == to_json(meta_payload("stream-1", context))
    assert json.loads(b"".join(parts))["context"]["sources"] == sources.entries != []


def test_a_context_without_passages_has_an_empty_source_list() -> None:
    context = dataclasses.replace(sample_context(), passages=())

    parts = meta_json("s", context, SourceLists()(context))

    assert json.loads(b"".join(parts))["context"]["sources"] == []
    assert b"".join(parts) == to_json(meta_payload("s", context))


def test_titles_with_quotes_newlines_and_non_ascii_stay_valid_one_line_json() -> None:
    passage = Passage(id="c1", doc_id='d"1', title='Zelt "Nordkap"\nÜbergröße', text="t", score=0.5)
    context = dataclasses.replace(sample_context(), passages=(passage,))

    data = b"".join(meta_json("s", context, SourceLists()(context)))

    assert b"\n" not in data
    assert json.loads(data)["context"]["sources"] == [
        {"id": 'd"1', "title": 'Zelt "Nordkap"\nÜbergröße', "score": 0.5}
    ]


async def test_the_session_sends_exactly_the_meta_event_of_the_payload() -> None:
    registry = StreamRegistry(StreamSettings(), max_sessions=10)
    context = sample_context()
    session = registry.open(context_id="shop:user-1", principal=None, started_at=0.0)

    session.publish_meta(meta_json(session.stream_id, context, SourceLists()(context)))

    prefix = f"{session.stream_id}:".encode()
    expected = encode_event(prefix, 1, "meta", to_json(meta_payload(session.stream_id, context)))
    assert native_bytes(session) == expected
    assert session.last_seq == 1
    await registry.close()


def meta_bytes_per_session(publish_shared: bool) -> float:
    registry = StreamRegistry(StreamSettings(), max_sessions=SESSIONS)
    context = catalog_context()
    sources = SourceLists()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(SESSIONS):
        session = registry.open(context_id="shop:user-1", principal=None, started_at=0.0)
        if publish_shared:
            session.publish_meta(meta_json(session.stream_id, context, sources(context)))
        else:
            session.publish_meta(meta_payload(session.stream_id, context))
    gc.collect()
    used = (tracemalloc.get_traced_memory()[0] - before) / SESSIONS
    tracemalloc.stop()
    return used


def test_streams_of_one_context_share_their_sources_bytes() -> None:
    sources_json = len(SourceLists()(catalog_context()).json)
    assert sources_json > 400

    own_copies = meta_bytes_per_session(publish_shared=False)
    shared = meta_bytes_per_session(publish_shared=True)

    # Each session saves its copy of the sources, less the tuple and the small parts around it.
    assert own_copies - shared > sources_json - 200, (own_copies, shared, sources_json)
