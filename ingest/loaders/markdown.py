"""Markdown and plain-text files as documents.

A Markdown file becomes one document per section: each "# " or "## " heading with the body up to
the next such heading (deeper headings stay inside their section), plus the text before the first
heading, if any. Headings inside fenced code blocks do not count; setext headings (underlined
with === or ---) are not recognised. A plain-text file is one document; the chunker cuts it.

Ids are stable: ``<source>#<slug of heading>``, with -2, -3, ... for repeated slugs in a file, and
``<source>#_preamble`` for the text before the first heading (a slug never starts with "_", so
adding a preamble later does not renumber the sections).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ingest.documents import SourceDocument

PREAMBLE_ANCHOR = "_preamble"
_HEADING = re.compile(r" {0,3}(#{1,2})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_NOT_SLUG = re.compile(r"[\W_]+")


@dataclass
class _Section:
    heading: str | None  # None for the preamble
    line: int
    lines: list[str] = field(default_factory=list)

    def body(self) -> str:
        lines = self.lines
        while lines and not lines[0].strip():
            lines = lines[1:]
        while lines and not lines[-1].strip():
            lines = lines[:-1]
        return "\n".join(lines)


def markdown_documents(text: str, source: str) -> list[SourceDocument]:
    """One document per section that has a body; a heading with nothing under it is dropped."""
    stem = PurePosixPath(source).stem
    category = document_category(source)
    anchors = _Anchors()
    documents = []
    for section in _sections(text):
        anchor = anchors.next(section.heading) if section.heading else PREAMBLE_ANCHOR
        body = section.body()
        if not body:
            continue
        title = section.heading or stem
        documents.append(
            SourceDocument(
                doc_id=f"{source}#{anchor}",
                kind="document",
                title=title,
                text=f"{title}\n\n{body}" if section.heading else body,
                source=source,
                line=section.line,
                metadata={"category": category, "heading": title},
            )
        )
    return documents


def text_document(text: str, source: str) -> list[SourceDocument]:
    """A plain-text file as one document titled by its file name (without extension)."""
    body = text.strip()
    if not body:
        return []
    first_line = next(n for n, line in enumerate(text.split("\n"), start=1) if line.strip())
    return [
        SourceDocument(
            doc_id=source,
            kind="document",
            title=PurePosixPath(source).stem,
            text=body,
            source=source,
            line=first_line,
            metadata={"category": document_category(source)},
        )
    ]


def slugify(heading: str) -> str:
    """Lower-case words joined by "-"; letters with accents keep their base letter."""
    decomposed = unicodedata.normalize("NFKD", heading)
    plain = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _NOT_SLUG.sub("-", plain.lower()).strip("-") or "section"


def document_category(source: str) -> str:
    """The category: "faq" for FAQ files, else the folder the file lies in, else "policy"."""
    path = PurePosixPath(source)
    if "faq" in path.stem.lower():
        return "faq"
    return path.parent.name or "policy"


class _Anchors:
    """Hands out slugs, numbering repeats within one file: returns, returns-2, returns-3."""

    def __init__(self) -> None:
        self.used: dict[str, int] = {}

    def next(self, heading: str) -> str:
        slug = slugify(heading)
        count = self.used.get(slug, 0) + 1
        self.used[slug] = count
        return slug if count == 1 else f"{slug}-{count}"


def _sections(text: str) -> list[_Section]:
    sections: list[_Section] = []
    current = _Section(heading=None, line=1)
    fence: str | None = None
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        fence = _fence_state(line, fence)
        match = _HEADING.fullmatch(line) if fence is None else None
        if match and match.group(2):
            sections.append(current)
            current = _Section(heading=match.group(2), line=number)
            continue
        if current.heading is None and not current.lines and not line.strip():
            current.line = number + 1  # the preamble starts at its first non-blank line
            continue
        current.lines.append(line)
    sections.append(current)
    return sections


def _fence_state(line: str, fence: str | None) -> str | None:
    """The open fence after ``line``: opened by ``` or ~~~, closed by the same run or longer."""
    match = _FENCE.match(line)
    if match is None:
        return fence
    run = match.group(1)
    if fence is None:
        return run
    if run[0] == fence[0] and len(run) >= len(fence) and not line.strip().strip(run[0]):
        return None
    return fence
