"""Fakes of the retrieval ports (Embedder, PassageSearch, CatalogRecords) and a manual clock.

- ``HashingEmbedder``: deterministic bag-of-words vectors (each word but a few stopwords hashed
  into a fixed number of dimensions, L2-normalised), so texts sharing words are similar.
- ``InMemoryPassageSearch``: cosine similarity over stored vectors, metadata equality filters,
  a settable live catalog version, failure switches and call counters. As ``CatalogRecords`` it
  names a new generation on every ``add`` and cannot tell changes, so hybrid retrieval reloads
  it whole after each change.
- ``Gate``: blocks the fakes' worker-thread calls until a test opens it (to hold a retrieval
  "in flight" deterministically); always opened at teardown so no thread is left hanging.
- ``ManualClock``: a ``Clock`` that moves only when told.

Counters are updated under a lock because the fakes run in worker threads (asyncio.to_thread).
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rag_service.domain import (
    CatalogChanges,
    CatalogInfo,
    CatalogRecord,
    CatalogRef,
    Filters,
    MetadataValue,
    Passage,
    Vector,
)
from rag_service.errors import EmbedderUnavailable, VectorStoreUnavailable

_WORD = re.compile(r"\w+")
# Function words would make every question look alike; real embedders weigh them little too.
STOPWORDS = frozenset(
    _WORD.findall(
        "a an and are can do does for how i in is it me of on or the to what with you your"
    )
)
GATE_MAX_WAIT_S = 10.0


class ManualClock:
    """Monotonic seconds that advance only through ``advance``."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        self.now += seconds


class Gate:
    """Open by default; ``close()`` makes ``wait()`` block (in a worker thread) until ``open()``."""

    def __init__(self) -> None:
        self._open = threading.Event()
        self._open.set()
        self._waiting = 0
        self._lock = threading.Lock()

    @property
    def waiting(self) -> int:
        """Threads blocked in ``wait()`` right now."""
        with self._lock:
            return self._waiting

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    def wait(self) -> None:
        with self._lock:
            self._waiting += 1
        try:
            # Bounded, so a test that forgets to open the gate cannot hang the interpreter.
            self._open.wait(GATE_MAX_WAIT_S)
        finally:
            with self._lock:
                self._waiting -= 1


class HashingEmbedder:
    """Deterministic word-hashing embedder (implements the ``Embedder`` port)."""

    def __init__(self, dimension: int = 256) -> None:
        self._dimension = dimension
        self.fail = False
        self.gate = Gate()
        self.calls = 0
        self.texts_embedded = 0
        self._lock = threading.Lock()

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def model_name(self) -> str:
        return f"hashing-{self._dimension}"

    def load(self) -> None:
        """Nothing to load: the vectors are computed from the words."""

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        with self._lock:
            self.calls += 1
            self.texts_embedded += len(texts)
        self.gate.wait()
        if self.fail:
            raise EmbedderUnavailable("fake embedder switched off")
        return [self.vector(text) for text in texts]

    def vector(self, text: str) -> Vector:
        """The vector of one text, without counting a call."""
        values = [0.0] * self._dimension
        for word in _WORD.findall(text.lower()):
            if word in STOPWORDS:
                continue
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "big") % self._dimension
            values[index] += 1.0 if digest[4] % 2 == 0 else -1.0
        norm = math.sqrt(sum(v * v for v in values))
        return [v / norm for v in values] if norm else values


@dataclass(frozen=True)
class StoredPassage:
    id: str
    doc_id: str
    title: str
    text: str
    vector: Vector
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)


class InMemoryPassageSearch:
    """An in-memory catalog (implements the ``PassageSearch`` port)."""

    def __init__(self, embedder: HashingEmbedder | None = None, version: int = 1) -> None:
        self._embedder = embedder or HashingEmbedder()
        self._passages: dict[str, StoredPassage] = {}
        self._revision = 0  # bumped by every add: the generation hybrid retrieval sees
        self.version = version
        self.fail_search = False
        self.fail_records = False  # records_at: what loading a catalog snapshot reads
        self.fail_live_version = False
        self.gate = Gate()
        self.search_calls = 0
        self.live_version_calls = 0
        self.last_filters: Mapping[str, MetadataValue] | None = None
        self.last_top_k: int | None = None
        self._lock = threading.Lock()

    def add(
        self,
        doc_id: str,
        text: str,
        *,
        title: str = "",
        chunk: int = 0,
        metadata: Mapping[str, MetadataValue] | None = None,
        vector: Vector | None = None,
    ) -> StoredPassage:
        """Store one passage; its vector is the embedder's (uncounted) unless given."""
        stored = StoredPassage(
            id=f"{doc_id}#{chunk}",
            doc_id=doc_id,
            title=title or doc_id,
            text=text,
            vector=vector if vector is not None else self._embedder.vector(f"{title} {text}"),
            metadata=dict(metadata or {}),
        )
        self._passages[stored.id] = stored
        self._revision += 1
        return stored

    def bump_version(self) -> int:
        self.version += 1
        return self.version

    def live_version(self) -> int:
        with self._lock:
            self.live_version_calls += 1
        if self.fail_live_version:
            raise VectorStoreUnavailable("fake store switched off (live_version)")
        return self.version

    def search(
        self,
        vector: Vector,
        *,
        top_k: int,
        filters: Mapping[str, MetadataValue] | None = None,
    ) -> list[Passage]:
        scored = self._nearest(vector, top_k, filters)
        return [_passage(stored, score) for score, stored in scored]

    # ---- CatalogRecords --------------------------------------------------------------------

    def live_catalog(self) -> CatalogRef:
        # Part of a search (ChromaStore.search reads the live state too), not a version check:
        # not counted as one; ``fail_search`` fails the search that follows.
        return CatalogRef(version=self.version, generation=f"memory-{self._revision}")

    def records_at(self, catalog: CatalogRef) -> list[CatalogRecord]:
        if self.fail_records:
            raise VectorStoreUnavailable("fake store switched off (records)")
        return [_record(stored) for stored in self._passages.values()]

    def changes_to(self, catalog: CatalogRef) -> CatalogChanges | None:
        return None

    def nearest(
        self, catalog: CatalogRef, vector: Vector, n: int, filters: Filters = None
    ) -> list[str]:
        return [stored.id for _, stored in self._nearest(vector, n, filters)]

    def nearest_any_version(self, catalog: CatalogRef, vector: Vector, n: int) -> list[str]:
        return self.nearest(catalog, vector, n)  # one version at a time: the same

    def vectors(self, catalog: CatalogRef, record_ids: Sequence[str]) -> dict[str, Vector]:
        return {rid: self._passages[rid].vector for rid in record_ids if rid in self._passages}

    def _nearest(
        self, vector: Vector, top_k: int, filters: Mapping[str, MetadataValue] | None
    ) -> list[tuple[float, StoredPassage]]:
        with self._lock:
            self.search_calls += 1
            self.last_filters = filters
            self.last_top_k = top_k
        self.gate.wait()
        if self.fail_search:
            raise VectorStoreUnavailable("fake store switched off (search)")
        wanted = filters or {}
        scored = [
            (_cosine(vector, stored.vector), stored)
            for stored in self._passages.values()
            if all(stored.metadata.get(k) == v for k, v in wanted.items())
        ]
        scored.sort(key=lambda pair: pair[0], reverse=True)
        return scored[:top_k]

    def catalog_info(self) -> CatalogInfo:
        docs = {p.doc_id for p in self._passages.values()}
        return CatalogInfo(
            version=self.version,
            document_count=len(docs),
            chunk_count=len(self._passages),
            sources={"memory": len(docs)},
            updated_at=None,
            embedding_model=self._embedder.model_name,
        )


def _cosine(a: Vector, b: Vector) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def _record(stored: StoredPassage) -> CatalogRecord:
    return CatalogRecord(
        record_id=stored.id,
        chunk_id=stored.id,
        doc_id=stored.doc_id,
        title=stored.title,
        text=stored.text,
        metadata=stored.metadata,
    )


def _passage(stored: StoredPassage, score: float) -> Passage:
    return _record(stored).passage(score, stored.vector)
