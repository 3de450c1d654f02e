"""The token upstream's answers: shop-assistant prose that never repeats itself.

An answer is a pure function of the request's messages and its length in tokens (one word per
token, with its leading space): sentences of the patterns in ``bench/data/answer_phrases.toml``,
each slot filled with a phrase of its list drawn by a ``random.Random`` seeded from the messages.

It must not look like a loop to the service. The repetition stop (rag_service/streaming/
repetition.py) holds a delta back while the last ``DEFAULT_HOLD_CHARS`` characters of the answer
occur earlier in it, until the next delta shows whether the copy goes on. Drawn from a small
vocabulary (the fault upstream's 18 words), a fifth of the deltas were held, and the concurrency
bench's added p99 measured the hold (one token interval) instead of the service. So a phrase is
used once per answer, and one whose words would end a delta on characters the answer already
holds is skipped for the next one that fits. Answers of up to 500 tokens (the benches ask for 8
to 200) hold nothing back (tests/test_bench_token_upstream.py); only when every phrase of a slot
is spent or unfit does a longer answer reuse a phrase, and may then be held.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_service.streaming.repetition import DEFAULT_HOLD_CHARS

PHRASES_FILE = Path(__file__).resolve().parent / "data" / "answer_phrases.toml"
SLOTS = {"opener": "openers", "subject": "subjects", "verb": "verbs", "object": "objects",
         "detail": "details"}  # fmt: skip
_SLOT_ITEM = re.compile(r"\{(\w+)\}([.,]?)")


@dataclass(frozen=True)
class _Group:
    """A pattern's slot, the punctuation glued to its last word and the literal words after it."""

    slot: str
    punctuation: str
    literals: tuple[str, ...]


@dataclass(frozen=True)
class _Phrases:
    patterns: tuple[tuple[_Group, ...], ...]
    banks: Mapping[str, tuple[tuple[str, ...], ...]]  # slot: its phrases, each as words
    words: frozenset[str]  # every word an answer can hold, bare


def answer_pieces(messages: Sequence[Mapping[str, Any]], words: int) -> list[str]:
    """The ``words`` text deltas of the answer to ``messages``: a pure function of roles and
    contents. The first has no leading space, every other one is a space and a word."""
    key = json.dumps([[m.get("role"), m.get("content")] for m in messages], ensure_ascii=False)
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return list(_answer_tokens(seed, words))


def answer_text(messages: Sequence[Mapping[str, Any]], words: int) -> str:
    return "".join(answer_pieces(messages, words))


def continuation_pieces(body: Mapping[str, Any], words: int) -> list[str]:
    """The deltas to stream for a chat ``body``: the answer to its messages or, when the last
    message is an assistant prefix to continue (``prefix`` or ``continue_final_message``), the
    rest of the answer to the messages before it (the delta the prefix ends in, cut)."""
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    last = messages[-1] if messages else None
    if not (
        isinstance(last, dict)
        and last.get("role") == "assistant"
        and (last.get("prefix") or body.get("continue_final_message"))
    ):
        return answer_pieces(messages, words)
    pieces = answer_pieces(messages[:-1], words)
    prefix = str(last.get("content") or "")
    if not "".join(pieces).startswith(prefix):
        return pieces
    rest, start = [], 0
    for piece in pieces:
        end = start + len(piece)
        if end > len(prefix):
            rest.append(piece[max(0, len(prefix) - start) :])
        start = end
    return rest


def is_whole_answer(text: str, words: int) -> bool:
    """Could ``text`` be a whole answer of ``words`` tokens (for a client that cannot know the
    messages the service sent upstream)?"""
    tokens = text.split(" ")
    known = _phrases().words
    return len(tokens) == words and all(token.rstrip(".,") in known for token in tokens)


@functools.lru_cache(maxsize=1024)  # a bench asks the same few questions thousands of times
def _answer_tokens(seed: int, words: int) -> tuple[str, ...]:
    phrases = _phrases()
    rng = random.Random(seed)
    unused = {slot: _shuffled(rng, bank) for slot, bank in phrases.banks.items()}
    text, count = "", 0
    while count < words:
        for position, group in enumerate(rng.choice(phrases.patterns)):
            candidates = unused[group.slot]
            index = _first_fitting(text, group, candidates, sentence_start=position == 0)
            if index is None:  # only answers far longer than the benches' get here
                candidates[:] = _shuffled(rng, phrases.banks[group.slot])
                index = _first_fitting(text, group, candidates, sentence_start=position == 0) or 0
            added = _group_words(group, candidates.pop(index), sentence_start=position == 0)
            text = " ".join((text, *added)) if text else " ".join(added)
            count += len(added)
    tokens = text.split(" ")[:words]
    return tuple(token if n == 0 else f" {token}" for n, token in enumerate(tokens))


def _first_fitting(
    text: str, group: _Group, candidates: list[tuple[str, ...]], *, sentence_start: bool
) -> int | None:
    """The first candidate phrase that lets no delta end on ``DEFAULT_HOLD_CHARS`` characters
    that occur earlier in the answer (what the repetition stop holds back)."""
    for index, phrase in enumerate(candidates):
        if _repeats_nothing(text, _group_words(group, phrase, sentence_start=sentence_start)):
            return index
    return None


def _repeats_nothing(text: str, words: list[str]) -> bool:
    for word in words:
        text = f"{text} {word}" if text else word
        tail = text[-DEFAULT_HOLD_CHARS:]
        if len(text) > DEFAULT_HOLD_CHARS and text.find(tail, 0, len(text) - 1) != -1:
            return False
    return True


def _group_words(group: _Group, phrase: tuple[str, ...], *, sentence_start: bool) -> list[str]:
    """The words ``group`` adds with ``phrase``: capitalised at a sentence's start, its
    punctuation on the last one, then the pattern's literal words."""
    first = _capitalised(phrase[0]) if sentence_start else phrase[0]
    words = [first, *phrase[1:]]
    words[-1] += group.punctuation
    return [*words, *group.literals]


def _shuffled(rng: random.Random, bank: tuple[tuple[str, ...], ...]) -> list[tuple[str, ...]]:
    return rng.sample(bank, len(bank))


@functools.cache
def _phrases() -> _Phrases:
    with PHRASES_FILE.open("rb") as file:
        table = tomllib.load(file)
    banks = {slot: tuple(tuple(p.split()) for p in table[name]) for slot, name in SLOTS.items()}
    patterns = tuple(_parse_pattern(pattern) for pattern in table["patterns"])
    words = {word for bank in banks.values() for phrase in bank for word in phrase}
    words |= {word for pattern in patterns for group in pattern for word in group.literals}
    return _Phrases(patterns, banks, frozenset(words | {_capitalised(word) for word in words}))


def _parse_pattern(pattern: str) -> tuple[_Group, ...]:
    """``"{subject} {verb} {object} and {verb} {object}."`` as groups: each slot with the
    punctuation after it and the literal words up to the next slot."""
    groups: list[_Group] = []
    for item in pattern.split(" "):
        slot = _SLOT_ITEM.fullmatch(item)
        if slot is not None:
            if slot[1] not in SLOTS:
                raise ValueError(f"{PHRASES_FILE}: unknown slot {slot[1]!r} in {pattern!r}")
            groups.append(_Group(slot[1], slot[2], ()))
        elif groups and "{" not in item:
            last = groups[-1]
            groups[-1] = _Group(last.slot, last.punctuation, (*last.literals, item))
        else:
            raise ValueError(f"{PHRASES_FILE}: a pattern starts with a slot: {pattern!r}")
    return tuple(groups)


def _capitalised(word: str) -> str:
    return word[:1].upper() + word[1:]
