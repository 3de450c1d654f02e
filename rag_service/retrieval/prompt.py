"""Prompt assembly: instructions, delimited catalog context, recent turns, then the question.

The default model is small (SmolLM2-135M, 2048-token window, 256 answer tokens), so everything
here is bounded: the instructions are a few sentences, the context has a character budget
(``retrieval.context_char_budget``), the history keeps only the most recent turns that fit.
Passages go in the retriever's order, most relevant first, so a small budget keeps the best. A
135M model answers a one-fact question best from one or two passages: more context, even
relevant, makes it copy the wrong figure or loop (docs/benchmarks.md, "Small-model answers").
Message layout:

    system:  instructions + <context> [source: ID] Title / text ... </context>
    (earlier user/assistant turns, oldest first)
    user:    the question
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from typing import NamedTuple

from cachetools import LRUCache

from rag_service.domain import ChatMessage, ChatRequest, ContextState, Passage, ResolvedContext

CONTEXT_OPEN = "<context>"
CONTEXT_CLOSE = "</context>"
ELLIPSIS = "…"

INSTRUCTIONS = (
    "You are the customer-service assistant of an online shop. "
    "Answer only from the catalog context between <context> and </context>. "
    "Never state or cite anything that is not in it; name the [source: ...] id you used. "
    "If the context does not contain the answer, say plainly that you do not know. "
    "Be brief."
)
FALLBACK_NOTE = (
    "The catalog cannot be searched right now, so you cannot look up product details; "
    "say so when asked for them."
)
NO_CONTEXT_TEXT = "(no catalog information available)"
_SEPARATOR = "\n\n"

DEFAULT_HISTORY_CHAR_BUDGET = 1500
DEFAULT_MAX_HISTORY_MESSAGES = 10
# A sentence end at or after this share of the limit is a good cut; earlier ones waste too much.
_MIN_CUT_SHARE = 0.5
_DELIMITER_PATTERN = re.compile(r"<\s*(/?)\s*context\s*>", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")
# Distinct contexts whose system message is kept for sharing (~4-7 KB each at the default budget).
DEFAULT_SHARED_PROMPTS = 1024


def build_chat_request(
    context: ResolvedContext,
    query: str,
    history: Sequence[ChatMessage],
    *,
    char_budget: int,
    history_char_budget: int = DEFAULT_HISTORY_CHAR_BUDGET,
    max_history_messages: int = DEFAULT_MAX_HISTORY_MESSAGES,
) -> ChatRequest:
    """The upstream request for ``query`` grounded in ``context``.

    ``char_budget`` bounds the text between the context delimiters. ``system`` messages in
    ``history`` are dropped (clients must not replace the instructions), and so is a trailing
    user message equal to ``query`` (OpenAI-style clients send the question inside the history).
    The service uses ``ChatRequestBuilder``, which builds the same request but shares the system
    message between requests grounded in the same passages.
    """
    return assemble_chat_request(
        system_message(context, char_budget),
        query,
        history,
        history_char_budget=history_char_budget,
        max_history_messages=max_history_messages,
    )


def system_message(context: ResolvedContext, char_budget: int) -> ChatMessage:
    """The instructions and the delimited context block: everything the question does not change."""
    instructions = INSTRUCTIONS
    if context.state is ContextState.fallback:
        instructions = f"{INSTRUCTIONS} {FALLBACK_NOTE}"
    body = context_block(context, char_budget) or _truncate(NO_CONTEXT_TEXT, char_budget)
    return ChatMessage(
        role="system", content=f"{instructions}\n\n{CONTEXT_OPEN}\n{body}\n{CONTEXT_CLOSE}"
    )


def assemble_chat_request(
    system: ChatMessage,
    query: str,
    history: Sequence[ChatMessage],
    *,
    history_char_budget: int = DEFAULT_HISTORY_CHAR_BUDGET,
    max_history_messages: int = DEFAULT_MAX_HISTORY_MESSAGES,
) -> ChatRequest:
    """``system``, then the recent turns that fit, then the question."""
    turns = recent_turns(
        history, query, char_budget=history_char_budget, max_messages=max_history_messages
    )
    return ChatRequest(messages=(system, *turns, ChatMessage(role="user", content=query)))


class ChatRequestBuilder:
    """``build_chat_request`` that shares one system message among requests on the same context.

    A stream holds its request for its whole life (retries resend it), and the system message is
    most of it (instructions + a context block of up to ``char_budget`` characters). Thousands of
    streams grounded in the same few fresh contexts would each hold an equal copy; this keeps one
    per distinct context in a bounded LRU, keyed by everything the message is rendered from
    (``system_key``), so a refreshed context can never be answered with an older message.
    Implements ``rag_service.streaming.answer.PromptBuilder``; used from the event loop only.
    """

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_SHARED_PROMPTS,
        history_char_budget: int = DEFAULT_HISTORY_CHAR_BUDGET,
        max_history_messages: int = DEFAULT_MAX_HISTORY_MESSAGES,
    ) -> None:
        self._messages: LRUCache[Hashable, ChatMessage] = LRUCache(maxsize=max_entries)
        self._by_passages: LRUCache[int, _KnownPassages] = LRUCache(maxsize=max_entries)
        self._history_char_budget = history_char_budget
        self._max_history_messages = max_history_messages
        self.hits = 0
        self.misses = 0

    def __call__(
        self,
        context: ResolvedContext,
        query: str,
        history: Sequence[ChatMessage],
        *,
        char_budget: int,
    ) -> ChatRequest:
        return assemble_chat_request(
            self.system_message(context, char_budget),
            query,
            history,
            history_char_budget=self._history_char_budget,
            max_history_messages=self._max_history_messages,
        )

    def __len__(self) -> int:
        """Distinct system messages held now."""
        return len(self._messages)

    def system_message(self, context: ResolvedContext, char_budget: int) -> ChatMessage:
        """``system_message(context, char_budget)``, the same object for an equal context.

        Fresh contexts hand out the very passages tuple of their cache entry, so the message
        of a tuple seen before is found by identity, without building and hashing its
        ``system_key``. The entry holds the tuple, so its ``id`` cannot be reused meanwhile.
        """
        passages = context.passages
        by_identity = bool(passages) and context.state is not ContextState.fallback
        if by_identity:
            known = self._by_passages.get(id(passages))
            if known is not None and known.passages is passages and known.budget == char_budget:
                self.hits += 1
                return known.message
        message = self._shared_message(context, char_budget)
        if by_identity:
            self._by_passages[id(passages)] = _KnownPassages(passages, char_budget, message)
        return message

    def _shared_message(self, context: ResolvedContext, char_budget: int) -> ChatMessage:
        key = system_key(context, char_budget)
        message = self._messages.get(key)
        if message is None:
            self.misses += 1
            message = self._messages[key] = system_message(context, char_budget)
        else:
            self.hits += 1
        return message


class _KnownPassages(NamedTuple):
    """A passages tuple whose system message was rendered (``ChatRequestBuilder``)."""

    passages: tuple[Passage, ...]
    budget: int
    message: ChatMessage


def system_key(context: ResolvedContext, char_budget: int) -> Hashable:
    """Everything ``system_message`` renders from: equal keys give equal messages.

    Passages go in whole and in their given order (not only the parts shown today), so a change
    to how passages are rendered cannot make two different prompts share a key. ``metadata`` is
    left out (it is unhashable and not rendered); render it and it must join the key.
    """
    if context.state is ContextState.fallback:
        return ("fallback", char_budget, context.fallback_text)
    if not context.passages:
        return ("empty", char_budget, context.fallback_text)
    passages = tuple((p.id, p.doc_id, p.title, p.text, p.score) for p in context.passages)
    return ("passages", char_budget, passages)


def context_block(context: ResolvedContext, char_budget: int) -> str:
    """The text between the delimiters: passages most relevant first (the retriever's order),
    never longer than the budget."""
    if context.state is ContextState.fallback or not context.passages:
        return _truncate(_neutralise(context.fallback_text or ""), char_budget)
    return _SEPARATOR.join(block for _, block in _fitting_blocks(context.passages, char_budget))


def prompt_passages(context: ResolvedContext, char_budget: int) -> tuple[Passage, ...]:
    """The passages that ``build_chat_request`` puts into the prompt (for listing sources)."""
    if context.state is ContextState.fallback:
        return ()
    return tuple(p for p, _ in _fitting_blocks(context.passages, char_budget))


def _fitting_blocks(passages: Sequence[Passage], char_budget: int) -> list[tuple[Passage, str]]:
    """Whole passage blocks in the given order while they fit; only the first may be cut.

    The order is the retriever's ranking (an exact identifier match first, then fused rank),
    which scores do not always reflect: fused and lexical scores are not comparable with dense
    ones, so they are never re-sorted here.
    """
    chosen: list[tuple[Passage, str]] = []
    used = 0
    for passage in passages:
        gap = len(_SEPARATOR) if chosen else 0
        block = _passage_block(passage)
        if used + gap + len(block) <= char_budget:
            chosen.append((passage, block))
            used += gap + len(block)
            continue
        if not chosen:
            # A part of the most relevant passage beats an empty context.
            truncated = _passage_block(passage, char_budget)
            if truncated:
                chosen.append((passage, truncated))
        break
    return chosen


def recent_turns(
    history: Sequence[ChatMessage], query: str, *, char_budget: int, max_messages: int
) -> list[ChatMessage]:
    """The most recent user/assistant turns (oldest first) within both bounds."""
    if not history:
        return []  # most questions come without one
    turns = [m for m in history if m.role != "system" and m.content.strip()]
    if turns and turns[-1].role == "user" and turns[-1].content.strip() == query.strip():
        turns.pop()
    kept: list[ChatMessage] = []
    used = 0
    # Newest first, stopping at the first that does not fit, so no gap opens in the dialogue.
    for message in reversed(turns):
        if len(kept) >= max_messages or used + len(message.content) > char_budget:
            break
        kept.append(message)
        used += len(message.content)
    kept.reverse()
    return kept


def _passage_block(passage: Passage, limit: int | None = None) -> str:
    title = " ".join(passage.title.split())
    header = f"[source: {passage.doc_id}] {title}".rstrip() + "\n"
    text = _neutralise(passage.text.strip())
    if limit is None:
        return header + text
    room = limit - len(header)
    if room <= len(ELLIPSIS):
        return ""
    return header + _truncate(text, room)


def _neutralise(text: str) -> str:
    """Catalog text must not be able to close the context block and speak as instructions."""
    return _DELIMITER_PATTERN.sub(lambda m: f"({m.group(1)}context)", text)


def _truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a sentence end or else a word boundary."""
    if len(text) <= limit:
        return text
    if limit <= len(ELLIPSIS):
        return ""
    window = text[: limit - len(ELLIPSIS)]
    floor = int(limit * _MIN_CUT_SHARE)
    sentence_ends = [m.end() for m in _SENTENCE_END.finditer(text[:limit]) if m.end() >= floor]
    if sentence_ends:
        return text[: sentence_ends[-1]].rstrip()
    space = window.rfind(" ")
    cut = space if space >= floor else len(window)
    return window[:cut].rstrip() + ELLIPSIS
