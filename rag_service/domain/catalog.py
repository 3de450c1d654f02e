"""The catalog as retrieval reads it: passages, catalog versions and their records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

MetadataValue = str | int | float | bool
Vector = list[float]
Filters = Mapping[str, MetadataValue] | None  # metadata equality filters; None: no filter


@dataclass(frozen=True)
class Passage:
    """One retrieved piece of catalog text."""

    id: str
    doc_id: str
    title: str
    text: str
    score: float
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)
    # The passage's embedding, when the store gave it: what judging whether a cached context
    # covers a new question compares against. Never sent to clients.
    vector: tuple[float, ...] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class CatalogInfo:
    """The live catalog as readers see it."""

    version: int
    document_count: int
    chunk_count: int
    sources: Mapping[str, int]
    updated_at: str | None
    embedding_model: str | None


@dataclass(frozen=True)
class CatalogRef:
    """Which catalog readers see: its version, and the generation of records that holds it (a
    new one when the embedding model changes; a fake store bumps it on every change)."""

    version: int
    generation: str | None


@dataclass(frozen=True)
class CatalogRecord:
    """One passage of a catalog version, as hybrid retrieval holds it in memory."""

    record_id: str  # unique across versions: a changed passage is a new record
    chunk_id: str
    doc_id: str
    title: str
    text: str
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)

    def passage(self, score: float, vector: Sequence[float] | None) -> Passage:
        return Passage(
            id=self.chunk_id,
            doc_id=self.doc_id,
            title=self.title,
            text=self.text,
            score=score,
            metadata=self.metadata,
            vector=tuple(vector) if vector is not None else None,
        )


@dataclass(frozen=True)
class CatalogChanges:
    """What one published version changed: records added, and ids of records retired."""

    added: tuple[CatalogRecord, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True)
class IndexedText:
    """What the lexical index holds of one record: its id and the words to find it by."""

    record_id: str
    text: str
