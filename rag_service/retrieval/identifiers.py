"""Identifiers (SKUs, model numbers) and their spellings: ``K-7416-F``, ``k 7416 f``, ``K7416F``.

Customers type an identifier however they like; a dense encoder sees ``K 7416 F`` as three
unrelated pieces and BM25 as three weak terms. So identifiers get a path of their own: at ingest
(in memory, when a catalog version is loaded) every identifier-shaped word of a passage is
*normalised* (upper case, separators dropped), and at query time every run of up to
``MAX_PARTS`` query words joined by separators is normalised the same way and looked up. A hit
is an exact match and ranks first.

An identifier is a word of letters and digits, possibly joined by ``-``, ``_``, ``.`` or ``/``,
holding at least one letter and one digit, at least ``MIN_LENGTH`` characters once normalised:
``BOT-00012``, ``XR200``, ``K-7416-F``. Sizes like ``EU 42`` are not (a space does not join words
at ingest), nor are prices or plain numbers. Product documents are named by their SKU, so a
document id of that shape counts too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MIN_LENGTH = 4
MAX_PARTS = 4  # "K 7416 F" is three parts; "ABC-12-34-X" four
# An identifier naming more documents than this is a family or a feature ("3-season"), not one
# product: it does not pin anything first, BM25 still weighs it.
MAX_DOCUMENTS = 3

_WORD = re.compile(r"[A-Za-z0-9]+")
_JOINED = re.compile(r"[A-Za-z0-9]+(?:[-_./][A-Za-z0-9]+)*")
# A whole joined word (not a part after a separator) with at least one digit.
_JOINED_WITH_DIGIT = re.compile(
    r"(?<![A-Za-z0-9])(?:[A-Za-z0-9]+[-_./])*[A-Za-z0-9]*[0-9][A-Za-z0-9]*(?:[-_./][A-Za-z0-9]+)*"
)
# What may sit between the parts of an identifier typed in a question.
_QUERY_SEPARATOR = re.compile(r"[-_./ ]{1,2}")


def normalise(identifier: str) -> str:
    """``k-7416 f`` -> ``K7416F``: upper case, separators and spaces dropped."""
    return "".join(_WORD.findall(identifier)).upper()


def is_identifier(normalised: str) -> bool:
    return (
        len(normalised) >= MIN_LENGTH
        and any(c.isdigit() for c in normalised)
        and any(c.isalpha() for c in normalised)
    )


def identifiers_in(text: str) -> set[str]:
    """The normalised identifiers written in a passage (words joined without spaces)."""
    found = set()
    # Only joined words holding a digit are candidates: the regex engine skips the rest, which
    # matters because a catalog load looks at every word of every passage.
    for match in _JOINED_WITH_DIGIT.finditer(text):
        normalised = normalise(match.group())
        if is_identifier(normalised):
            found.add(normalised)
    return found


@dataclass(frozen=True)
class QueryIdentifier:
    normalised: str
    start: int  # character span in the question
    end: int

    def inside(self, other: QueryIdentifier) -> bool:
        return other.start <= self.start and self.end <= other.end


def identifiers_in_query(query: str) -> list[QueryIdentifier]:
    """Every identifier candidate in a question, longest spans first.

    Runs of up to ``MAX_PARTS`` words separated by at most two of ``-_./`` or spaces are
    joined, so ``k 7416 f`` yields ``K7416F`` (and its shorter runs, e.g. ``K7416``): the caller
    keeps the candidates its catalog knows.
    """
    words = list(_WORD.finditer(query))
    candidates: list[QueryIdentifier] = []
    for first in range(len(words)):
        joined = ""
        for last in range(first, min(first + MAX_PARTS, len(words))):
            if last > first:
                gap = query[words[last - 1].end() : words[last].start()]
                if not _QUERY_SEPARATOR.fullmatch(gap):
                    break
            joined += words[last].group()
            normalised = joined.upper()
            if is_identifier(normalised):
                candidates.append(
                    QueryIdentifier(normalised, words[first].start(), words[last].end())
                )
    candidates.sort(key=lambda c: c.end - c.start, reverse=True)
    return candidates


@dataclass(frozen=True)
class IdentifierTable:
    """Normalised identifier -> the documents it names, of one catalog version."""

    documents: Mapping[str, frozenset[str]]

    @classmethod
    def build(cls, entries: Iterable[tuple[str, Iterable[str]]]) -> IdentifierTable:
        """From ``(doc_id, identifiers)`` pairs."""
        table: dict[str, set[str]] = {}
        for doc_id, identifiers in entries:
            for identifier in identifiers:
                table.setdefault(identifier, set()).add(doc_id)
        return cls({key: frozenset(docs) for key, docs in table.items()})

    def exact_documents(self, query: str) -> list[str]:
        """Documents the question names by an identifier, longest match first. Only
        identifiers specific enough (at most ``MAX_DOCUMENTS`` documents) count, and a part of a
        longer match does not count on its own (``K7416`` inside ``K 7416 F``)."""
        matched: list[QueryIdentifier] = []
        found: list[str] = []
        for candidate in identifiers_in_query(query):
            if any(candidate.inside(m) for m in matched):
                continue
            documents = self.documents.get(candidate.normalised)
            if documents and len(documents) <= MAX_DOCUMENTS:
                matched.append(candidate)
                found.extend(sorted(d for d in documents if d not in found))
        return found


def record_identifiers(doc_id: str, title: str, text: str) -> set[str]:
    """The identifiers that name a passage's document: those in its text and title, and its
    document id when that has an identifier's shape (products are named by their SKU)."""
    found = identifiers_in(title) | identifiers_in(text)
    if _JOINED.fullmatch(doc_id) and is_identifier(normalise(doc_id)):
        found.add(normalise(doc_id))
    return found
