"""Starting one streamed answer: everything that may still fail with an HTTP status.

``start_answer`` runs before the response's first byte, so its failures become ordinary JSON
errors (503 + Retry-After for an open upstream circuit or a full registry, 429 + Retry-After for
a client key past its own limits). Once it returns, the answer's generation runs in the registry
and every later failure arrives as an SSE ``error``.

Order matters for cost: the cheap refusals (circuit open, the key's limits, registry full) come
before the context lookup, and the session is opened only after the context is known, so its
``meta`` event is always its first. The key's limits come before the registry's: a key that
holds its share is told so (429), whatever the state of the process.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from cachetools import LRUCache

from rag_service.domain import ChatMessage, ChatRequest, MetadataValue, Passage, ResolvedContext
from rag_service.ports import ChatUpstream, ContextResolver, KeyLimiter, SharedStreams, StreamSlot
from rag_service.settings import ContinuationStrategy, Settings
from rag_service.streaming.registry import Generation, StreamRegistry
from rag_service.streaming.repetition import answer_without_loops
from rag_service.streaming.replicas import Takeover
from rag_service.streaming.session import StreamSession
from rag_service.streaming.shared_streams import InProcessStreams
from rag_service.streaming.sse_format import to_json

# Distinct passage tuples whose source list is kept (as many as fresh contexts by default).
DEFAULT_SHARED_SOURCE_LISTS = 1024


class PromptBuilder(Protocol):
    """Builds the upstream request (``rag_service.retrieval.prompt.build_chat_request``)."""

    def __call__(
        self,
        context: ResolvedContext,
        query: str,
        history: Sequence[ChatMessage],
        *,
        char_budget: int,
    ) -> ChatRequest: ...


class SharedSources(NamedTuple):
    """A context's ``source_list`` and its compact JSON, shared by the streams using it."""

    entries: list[dict[str, Any]]
    json: bytes


_NO_SOURCES = SharedSources([], b"[]")


class SourceLists:
    """``source_list`` per passages tuple, computed and encoded once and shared by the streams
    using it: the ``meta`` event of every stream of a context holds the same JSON bytes.

    A fresh context hands every request the very passages tuple of its cache entry, so a tuple
    seen before is found by identity. An entry holds its tuple, so the tuple's ``id`` cannot be
    reused while the entry lives. The lists are shared and must not be changed.
    """

    def __init__(self, max_entries: int = DEFAULT_SHARED_SOURCE_LISTS) -> None:
        self._lists: LRUCache[int, tuple[tuple[Passage, ...], SharedSources]] = LRUCache(
            maxsize=max_entries
        )

    def __call__(self, context: ResolvedContext) -> SharedSources:
        passages = context.passages
        if not passages:
            return _NO_SOURCES
        known = self._lists.get(id(passages))
        if known is not None and known[0] is passages:
            return known[1]
        entries = source_list(context)
        shared = SharedSources(entries, to_json(entries))
        self._lists[id(passages)] = (passages, shared)
        return shared


@dataclass(frozen=True)
class StreamDeps:
    """What the streaming routes need; built once in ``create_app`` and shared by all requests."""

    resolver: ContextResolver
    upstream: ChatUpstream
    registry: StreamRegistry
    settings: Settings
    build_request: PromptBuilder
    rng: random.Random = field(default_factory=random.Random)  # jitters the `retry:` hint
    sources: SourceLists = field(default_factory=SourceLists)
    # Per-key limits; None: none (they apply only to callers with a key, i.e. with auth on).
    limiter: KeyLimiter | None = None
    # Where streams are shared with other replicas (Redis); in-process: nowhere.
    shared: SharedStreams = field(default_factory=InProcessStreams)


@dataclass(frozen=True)
class AnswerRequest:
    """A validated streaming request (see ``rag_service.streaming.request_body``)."""

    context_id: str
    query: str
    history: tuple[ChatMessage, ...] = ()
    filters: Mapping[str, MetadataValue] | None = None
    top_k: int | None = None
    refresh: bool = False


async def start_answer(
    deps: StreamDeps, request: AnswerRequest, *, principal: str | None
) -> StreamSession:
    """Open a session for ``request``, publish its ``meta`` event and start its generation.

    The returned session has one reader attached: the caller's response must detach it.
    Raises ``CircuitOpen`` / ``ServiceUnavailable`` (503), ``RateLimited`` (429: the caller's
    key is past its limits) and whatever the resolver raises.
    """
    started_at = deps.registry.now()
    deps.upstream.ensure_available()
    slot = await _admit(deps, principal)
    try:
        deps.registry.check_capacity()
        context = await deps.resolver.resolve(
            request.context_id,
            request.query,
            filters=request.filters,
            top_k=request.top_k,
            refresh=request.refresh,
        )
        chat_request = deps.build_request(
            context,
            request.query,
            request.history,
            char_budget=deps.settings.retrieval.context_char_budget,
        )
    except BaseException:
        if slot is not None:
            slot.release()
        raise
    # From here on the session holds the slot: the registry releases it when the generation
    # ends, which may be long after the client left.
    session = deps.registry.open(
        context_id=request.context_id, principal=principal, started_at=started_at, slot=slot
    )
    try:
        deps.shared.share(session, deps.registry, chat_request)  # before its first event
        session.publish_meta(meta_json(session.stream_id, context, deps.sources(context)))
        deps.registry.start(session, _generation(deps, chat_request))
    except BaseException:
        deps.registry.abandon(session)  # no response will ever detach its reader
        raise
    return session


def _generation(deps: StreamDeps, chat_request: ChatRequest, delivered: str = "") -> Generation:
    """The upstream's answer (after ``delivered``, text its client has: a take-over), through
    the repetition stop unless it is off."""
    min_chars = deps.settings.answer.repetition_min_chars
    if not min_chars:
        return functools.partial(deps.upstream.answer, chat_request, delivered=delivered)
    return functools.partial(
        answer_without_loops,
        deps.upstream,
        chat_request,
        min_chars,
        deps.registry.now,
        delivered=delivered,
    )


def takeover_of(deps: StreamDeps) -> Takeover:
    """How this replica continues the stream of a replica that died (``replicas``)."""
    strategy = deps.settings.upstream.continuation
    return Takeover(
        generation=functools.partial(_generation, deps),
        continues_text=strategy is not ContinuationStrategy.none,
    )


async def _admit(deps: StreamDeps, principal: str | None) -> StreamSlot | None:
    """The key's stream slot; None without a key (auth off) or without a limiter."""
    if principal is None or deps.limiter is None:
        return None
    return await deps.limiter.admit(principal)


def meta_payload(
    stream_id: str, context: ResolvedContext, sources: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The ``meta`` event: which context grounds the answer and how fresh it is.

    ``sources`` is ``source_list(context)`` when the caller has it already (``SourceLists``).
    """
    return {
        "stream_id": stream_id,
        "context_id": context.context_id,
        "context": {
            "state": context.state.value,
            "age_s": round(context.age_s, 3),
            "catalog_version": context.catalog_version,
            "extended": context.extended,
            "sources": source_list(context) if sources is None else sources,
        },
    }


# ``meta_payload`` puts "sources" last in "context", which comes last: its JSON ends so.
_EMPTY_SOURCES_END = b'"sources":[]}}'


def meta_json(
    stream_id: str, context: ResolvedContext, sources: SharedSources
) -> tuple[bytes, bytes, bytes]:
    """``to_json(meta_payload(stream_id, context, sources.entries))`` in three parts, the
    middle one ``sources.json`` itself: thousands of streams of one context hold one copy of
    their sources (~0.5 KB each) instead of one each."""
    head = to_json(meta_payload(stream_id, context, []))
    assert head.endswith(_EMPTY_SOURCES_END), "meta_payload must end with its sources"
    return head[: -len(b"[]}}")], sources.json, b"}}"


def source_list(context: ResolvedContext) -> list[dict[str, Any]]:
    """One entry per source document, in the context's order (the retrieval's ranking: a SKU
    the question names comes first), scored by its best passage (chunks of a document merge)."""
    best: dict[str, tuple[str, float]] = {}
    for passage in context.passages:
        known = best.get(passage.doc_id)
        if known is None or passage.score > known[1]:
            best[passage.doc_id] = (passage.title, passage.score)
    return [
        {"id": doc_id, "title": title, "score": round(score, 4)}
        for doc_id, (title, score) in best.items()
    ]
