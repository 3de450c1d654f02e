"""What ingestion reads and writes through the ``CatalogWriter`` port: the live catalog's
state, the records of its live version, and the records it stages for the next version.

A store keeps every record with the catalog versions it is visible in, so an ingest stages
records no reader sees and one ``publish`` of a new ``LiveState`` switches readers over
(``rag_service.adapters.chroma_store`` describes how Chroma holds them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rag_service.domain.catalog import MetadataValue, Vector


@dataclass(frozen=True)
class LiveRecord:
    """A record of the live version, as the ingest plan compares it with the files read."""

    record_id: str
    chunk_id: str
    doc_id: str
    record_hash: str  # of everything stored for it: unchanged means nothing to write
    text_hash: str  # of the text alone: unchanged means its embedding can be reused
    source: str


@dataclass(frozen=True)
class NewRecord:
    """A record an ingest stages for the version it is about to publish."""

    record_id: str
    chunk_id: str
    doc_id: str
    text: str
    embedding: Vector
    metadata: Mapping[str, MetadataValue]  # user metadata plus title/source/kind/hashes


@dataclass(frozen=True)
class LiveState:
    """The published catalog: its version, counts, and where its records are."""

    version: int
    document_count: int = 0
    chunk_count: int = 0
    sources: Mapping[str, int] | None = None
    updated_at: str | None = None
    embedding_model: str | None = None
    records_collection: str | None = None  # the record collection readers of this version use
    previous_collection: str | None = None  # the one readers of the previous version may use
