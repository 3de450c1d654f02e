"""The records that flow through ingestion: source documents, chunks and load problems."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Literal

MetadataValue = str | int | float | bool
DocumentKind = Literal["product", "document"]


@dataclass(frozen=True)
class SourceDocument:
    """One catalog record: a product (id = SKU) or a policy/FAQ section (id = path#heading)."""

    doc_id: str
    kind: DocumentKind
    title: str
    text: str
    source: str  # file path as given (relative where possible)
    line: int | None = None  # 1-based line/row where the record starts, when known
    metadata: dict[str, MetadataValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document small enough to embed; ``chunk_id`` is ``doc_id#index``."""

    chunk_id: str
    doc_id: str
    index: int
    title: str
    text: str
    source: str
    kind: DocumentKind
    metadata: dict[str, MetadataValue] = field(default_factory=dict)

    @property
    def text_hash(self) -> str:
        """Identifies the embedded text: equal text hashes can share one vector."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:32]

    @property
    def record_hash(self) -> str:
        """Identifies everything stored for this chunk: equal hashes mean nothing to update."""
        body = json.dumps(
            [self.title, self.text, self.source, self.kind, sorted(self.metadata.items())],
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return hashlib.sha256(body.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class LoadProblem:
    """A record that could not be loaded; ``line`` is 1-based where the format has lines.

    ``keeps_live``: a sync keeps the live documents of ``file`` (or of the files below it)
    instead of deleting them, so a malformed line or an unreadable folder never silently
    deletes what it held. False for what must not be served at all (a symlink leaving the
    catalog directory).
    """

    file: str
    line: int | None
    message: str
    keeps_live: bool = field(default=True, compare=False)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message}"


@dataclass
class LoadResult:
    documents: list[SourceDocument] = field(default_factory=list)
    problems: list[LoadProblem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
