"""Cutting documents into chunks small enough to embed, on natural boundaries.

A document of at most ``max_chars`` (after trimming surrounding whitespace) is one chunk holding
its whole text. A longer one is cut into units - sentences within paragraphs; a sentence longer
than a chunk into lines, then words; a word longer than a chunk into hard pieces - and the units
are packed greedily. A chunk prefers to end where a heading or, failing that, a paragraph starts,
as long as it is at least half full. Each chunk after the first starts with up to
``overlap_chars`` of whole trailing units of the one before (no overlap across a heading: a new
section starts clean). Every chunk is at most ``max_chars`` long, hard pieces included.

Title line: when a long document's text starts with its title on a line of its own (Markdown
sections, products), every chunk starts with that line, so a chunk read alone still says what it
is about. The title's room is reserved up front, so this never breaks the size limit; a title
longer than a quarter of ``max_chars`` is not repeated. Short documents are left exactly as they
are, and documents whose text does not start with the title (plain text, preambles) get none.

Chunk ids are ``<doc_id>#<index>``; the same document and settings always give the same chunks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ingest.documents import Chunk, SourceDocument
from rag_service.errors import ConfigurationError

_PARAGRAPH = re.compile(r"[^\n]*\S[^\n]*(?:\n[^\n]*\S[^\n]*)*")  # a run of non-blank lines
_HEADING_LINE = re.compile(r"^ {0,3}#{1,6}[ \t]", re.MULTILINE)
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*(?=\s)")
_NON_SPACE = re.compile(r"\S+")
_LINE = re.compile(r"[^\n]*\S[^\n]*")
# Words after which a period does not end the sentence (kept short on purpose)
# fmt: off
_ABBREVIATIONS = frozenset((
    "e.g", "i.e", "z.b", "d.h", "u.a", "bzw", "ca", "dr", "mr", "mrs", "ms", "nr", "vs", "inkl",
    "incl", "approx", "vgl", "usw",
))
# fmt: on


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    opens_paragraph: bool = False
    opens_heading: bool = False


def chunk_document(
    doc: SourceDocument, *, max_chars: int = 1200, overlap_chars: int = 200
) -> list[Chunk]:
    """The chunks of one document; an empty (all-whitespace) document has none."""
    _check_sizes(max_chars, overlap_chars)
    text = doc.text.strip()
    if not text:
        return []
    if len(text) <= max_chars:
        return _chunks(doc, [text])
    header, body = _split_title(doc.title, text, max_chars)
    prefix = f"{header}\n\n" if header else ""
    units = _units(body, max_chars - len(prefix))
    spans = _pack(units, max_chars - len(prefix), overlap_chars)
    return _chunks(doc, [prefix + body[start:end] for start, end in spans])


def chunk_documents(
    docs: Iterable[SourceDocument], *, max_chars: int, overlap_chars: int
) -> list[Chunk]:
    """The chunks of all ``docs``, in document order."""
    _check_sizes(max_chars, overlap_chars)
    chunks: list[Chunk] = []
    for doc in docs:
        chunks.extend(chunk_document(doc, max_chars=max_chars, overlap_chars=overlap_chars))
    return chunks


def _check_sizes(max_chars: int, overlap_chars: int) -> None:
    if max_chars < 1 or overlap_chars < 0:
        raise ConfigurationError(
            f"chunk sizes must be max_chars >= 1 and overlap_chars >= 0 "
            f"(got {max_chars} and {overlap_chars})"
        )


def _chunks(doc: SourceDocument, texts: list[str]) -> list[Chunk]:
    chunks = []
    for index, text in enumerate(texts):
        metadata = {**doc.metadata, "doc_id": doc.doc_id, "chunk_index": index}
        metadata["chunk_count"] = len(texts)
        chunks.append(
            Chunk(
                chunk_id=f"{doc.doc_id}#{index}",
                doc_id=doc.doc_id,
                index=index,
                title=doc.title,
                text=text,
                source=doc.source,
                kind=doc.kind,
                metadata=metadata,
            )
        )
    return chunks


def _split_title(title: str, text: str, max_chars: int) -> tuple[str, str]:
    """(title line to repeat, rest of the text), or ("", text) when there is none to repeat."""
    first_line, newline, rest = text.partition("\n")
    title = title.strip()
    if not newline or first_line.strip() != title or not title:
        return "", text
    if len(title) + 2 > max_chars // 4 or not rest.strip():
        return "", text
    return title, rest.strip()


def _units(body: str, budget: int) -> list[_Unit]:
    """Sentences of every paragraph; anything longer than ``budget`` cut smaller."""
    heading_starts = {match.start() for match in _HEADING_LINE.finditer(body)}
    units: list[_Unit] = []
    for paragraph in _paragraphs(body):
        first = len(units)
        for start, end in _sentences(body, *paragraph):
            units.extend(_fit(body, start, end, budget))
        if len(units) > first:
            head = units[first]
            units[first] = _Unit(
                head.start,
                head.end,
                opens_paragraph=True,
                opens_heading=head.start in heading_starts,
            )
    return units


def _paragraphs(body: str) -> list[tuple[int, int]]:
    """Runs of non-blank lines; a heading line also starts a new paragraph."""
    spans: list[tuple[int, int]] = []
    for match in _PARAGRAPH.finditer(body):
        inner = _HEADING_LINE.finditer(body, match.start() + 1, match.end())
        cuts = [match.start(), *(heading.start() for heading in inner)]
        ends = [*cuts[1:], match.end()]
        spans.extend(_trim(body, start, end) for start, end in zip(cuts, ends, strict=True))
    return [span for span in spans if span[0] < span[1]]


def _sentences(body: str, start: int, end: int) -> list[tuple[int, int]]:
    """Sentence spans in ``body[start:end]``: cut after . ! ? followed by whitespace."""
    spans = []
    position = start
    for match in _SENTENCE_END.finditer(body, start, end):
        if _is_abbreviation(body, position, match.start()):
            continue
        spans.append(_trim(body, position, match.end()))
        position = match.end()
    spans.append(_trim(body, position, end))
    return [span for span in spans if span[0] < span[1]]


def _is_abbreviation(body: str, sentence_start: int, dot: int) -> bool:
    """True when the word before ``dot`` is a listed abbreviation or a single letter."""
    if body[dot] != ".":
        return False
    word_start = dot
    while word_start > sentence_start and not body[word_start - 1].isspace():
        word_start -= 1
    word = body[word_start:dot].lstrip("(\"'").lower()
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def _fit(body: str, start: int, end: int, budget: int) -> list[_Unit]:
    """The span as one unit if it fits, else its lines, then words, then hard pieces."""
    if end - start <= budget:
        return [_Unit(start, end)]
    for pattern in (_LINE, _NON_SPACE):
        parts = [(m.start(), m.end()) for m in pattern.finditer(body, start, end)]
        if len(parts) > 1:
            return [unit for part in parts for unit in _fit(body, *part, budget)]
    return [_Unit(cut, min(cut + budget, end)) for cut in range(start, end, budget)]


def _trim(body: str, start: int, end: int) -> tuple[int, int]:
    while start < end and body[start].isspace():
        start += 1
    while end > start and body[end - 1].isspace():
        end -= 1
    return start, end


def _pack(units: list[_Unit], budget: int, overlap_chars: int) -> list[tuple[int, int]]:
    """Greedy spans over ``units``: each within ``budget``, each after the first overlapping."""
    spans = []
    first, done = 0, 0  # done: units already in some chunk; each chunk must add at least one
    while done < len(units):
        stop = first + 1
        while stop < len(units) and units[stop].end - units[first].start <= budget:
            stop += 1
        stop = _prefer_boundary(units, max(first, done), stop, budget, units[first].start)
        spans.append((units[first].start, units[stop - 1].end))
        done = stop
        if stop < len(units):
            first = _overlap_start(units, first, stop, budget, overlap_chars)
    return spans


def _prefer_boundary(units: list[_Unit], lowest: int, stop: int, budget: int, start: int) -> int:
    """Move the end back to a heading, else a paragraph start, if the chunk stays half full.

    The end stays above ``lowest`` so the chunk keeps at least one unit the last one lacked.
    """
    if stop == len(units):
        return stop
    half_full = [
        candidate
        for candidate in range(stop, lowest, -1)
        if units[candidate - 1].end - start >= budget // 2
    ]
    for candidate in half_full:
        if units[candidate].opens_heading:
            return candidate
    for candidate in half_full:
        if units[candidate].opens_paragraph:
            return candidate
    return stop


def _overlap_start(
    units: list[_Unit], first: int, stop: int, budget: int, overlap_chars: int
) -> int:
    """The first unit of the next chunk: ``stop`` moved back over whole trailing units."""
    if units[stop].opens_heading:
        return stop
    start = stop
    while (
        start - 1 > first
        and units[stop - 1].end - units[start - 1].start <= overlap_chars
        and units[stop].end - units[start - 1].start <= budget
    ):
        start -= 1
    return start
