"""The ingest pipeline: load, chunk, diff against the live catalog, embed what changed, publish.

The caller holds the ingest lock (see ``rag_service.ingest_composition``); the pipeline only talks to ports.
Writes go to records that no reader can see until ``publish``, so a failure or a kill at any
point leaves the live catalog as it was; the next run's ``recover`` clears the leftovers.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ingest.chunking import chunk_documents
from ingest.documents import Chunk, LoadProblem
from ingest.loaders import load_catalog
from ingest.loaders.paths import display_path
from ingest.loaders.problems import printable
from ingest.plan import IngestPlan, check_deletions, plan_ingest
from rag_service.domain import LiveRecord, LiveState, NewRecord, Vector
from rag_service.errors import InvalidInput
from rag_service.ports import CatalogWriter, Embedder, RecordWriter
from rag_service.settings import IngestSettings

ProgressCallback = Callable[[str, int, int], None]
"""Called as ``progress(phase, done, total)``; phases: load, plan, embed, publish."""


@dataclass
class IngestReport:
    version_before: int
    version_after: int
    published: bool
    dry_run: bool
    documents: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    kept: int = 0
    live_documents: int = 0  # in the live catalog before this run
    needs_confirmation: bool = False  # deletes more than max_delete_share of live_documents
    chunks_embedded: int = 0
    chunks_reused: int = 0
    seconds: float = 0.0
    failed: list[LoadProblem] = field(default_factory=list)

    @property
    def documents_per_second(self) -> float:
        return self.documents / self.seconds if self.seconds > 0 else 0.0


class IngestPipeline:
    """``batch_size`` is texts per embed call; the model splits each call into its own batches
    (``RAG_EMBEDDING__BATCH_SIZE``), so a larger call only means fewer round trips."""

    DEFAULT_BATCH_TEXTS = 512

    def __init__(
        self,
        store: CatalogWriter,
        embedder: Embedder,
        settings: IngestSettings,
        *,
        batch_size: int = DEFAULT_BATCH_TEXTS,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._settings = settings
        self._batch_size = batch_size

    def run(
        self,
        paths: Sequence[Path],
        *,
        strict: bool = False,
        dry_run: bool = False,
        append: bool = False,
        confirm_deletions: bool = False,
        base_dir: Path | None = None,
        progress: ProgressCallback | None = None,
    ) -> IngestReport:
        """Load ``paths`` and make the live catalog match them (``append``: add and update only).

        ``base_dir`` is the catalog root: sources are named relative to it, a sync deletes only
        within ``paths`` relative to it, and nothing whose real path leaves it is read (default:
        the deepest folder holding ``paths``). A plan that deletes more than
        ``max_delete_share`` of the live documents raises ``DeletionNotConfirmed`` unless
        ``confirm_deletions``; a dry run reports it as ``needs_confirmation`` instead.
        """
        started = time.perf_counter()
        notify = progress or _ignore_progress
        root = base_dir or catalog_root(paths)
        loaded = load_catalog(paths, strict=strict, base_dir=root)
        if not loaded.documents:
            raise InvalidInput(_nothing_to_ingest(paths, root, loaded.problems))
        chunks = chunk_documents(
            loaded.documents,
            max_chars=self._settings.chunk_chars,
            overlap_chars=self._settings.chunk_overlap_chars,
        )
        notify("load", len(loaded.documents), len(loaded.documents))
        live = self._store.live_state()
        same_model = live.embedding_model in (None, self._embedder.model_name)
        current = self._store.records(live.records_collection) if live.records_collection else None
        live_records = current.live_records(live.version) if current else {}
        plan = plan_ingest(
            chunks,
            live_records,
            delete_missing=not append,
            protected_sources={p.file for p in loaded.problems if p.keeps_live},
            sync_scope=sync_scope(paths, root),
        )
        if not same_model:
            plan = _rewrite_everything(plan, chunks, live.embedding_model)
        notify("plan", len(chunks), len(chunks))
        deletions = check_deletions(plan, live_records, max_share=self._settings.max_delete_share)
        if deletions.needs_confirmation and not (dry_run or confirm_deletions):
            raise deletions.refusal()  # before any write: the live catalog stays as it was
        report = _report(live.version, plan, loaded.problems, dry_run=dry_run)
        report.live_documents = deletions.live_documents
        report.needs_confirmation = deletions.needs_confirmation
        if dry_run or not plan.changes_anything:
            report.seconds = time.perf_counter() - started
            return report
        version = live.version + 1
        target = current if current and same_model else None
        if target is None:
            target = self._store.records(self._store.new_collection_name(version))
        self._store.drop_unused_collections(_in_use(live) | {target.name})
        target.recover(live.version)
        reuse = _reuse_pool(live_records) if target is current else {}
        report.chunks_embedded, report.chunks_reused = self._write(
            target, version, plan, reuse, notify
        )
        self._publish(target.name, live, chunks, plan, live_records)
        target.collect_garbage(version)
        report.version_after, report.published = version, True
        notify("publish", 1, 1)
        report.seconds = time.perf_counter() - started
        return report

    def _write(
        self,
        target: RecordWriter,
        version: int,
        plan: IngestPlan,
        reuse: dict[str, str],
        notify: ProgressCallback,
    ) -> tuple[int, int]:
        reusable = [c for c in plan.to_write if c.text_hash in reuse]
        # Length-sorted batches pad far less (sentence-transformers pads to the longest text of
        # each model batch); the order of writes does not matter, publish is what counts.
        fresh = sorted(
            (c for c in plan.to_write if c.text_hash not in reuse), key=lambda c: len(c.text)
        )
        vectors = target.embeddings_of(sorted({reuse[c.text_hash] for c in reusable}))
        target.stage(version, [_record(version, c, vectors[reuse[c.text_hash]]) for c in reusable])
        # Chroma writes run in a worker thread while the next batch is embedded.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="stage") as writer:
            pending: Future[None] | None = None
            done = 0
            for batch in _batches(fresh, self._batch_size):
                embedded = self._embedder.embed([c.text for c in batch])
                records = [_record(version, c, v) for c, v in zip(batch, embedded, strict=True)]
                if pending is not None:
                    pending.result()
                pending = writer.submit(target.stage, version, records)
                done += len(batch)
                notify("embed", done, len(fresh))
            if pending is not None:
                pending.result()
        target.retire(version, plan.to_retire)
        return len(fresh), len(reusable)

    def _publish(
        self,
        collection: str,
        live: LiveState,
        chunks: Sequence[Chunk],
        plan: IngestPlan,
        live_records: dict[str, LiveRecord],
    ) -> None:
        sources: Counter[str] = Counter()
        for chunk in chunks:
            sources[chunk.source] += 1
        kept = [r for r in live_records.values() if r.doc_id in plan.kept_docs]
        for record in kept:
            sources[record.source] += 1
        documents = len({c.doc_id for c in chunks}) + len(plan.kept_docs)
        self._store.publish(
            LiveState(
                version=live.version + 1,
                document_count=documents,
                chunk_count=len(chunks) + len(kept),
                sources=dict(sorted(sources.items())),
                embedding_model=self._embedder.model_name,
                records_collection=collection,
                previous_collection=live.records_collection,
            )
        )


def sync_scope(paths: Sequence[Path], root: Path) -> list[str]:
    """What a sync may delete from: the given paths relative to the root ("." for the root),
    named exactly as the sources found below them are.

    With root ``catalog/``: ``ingest catalog/`` syncs the whole catalog, ``ingest
    catalog/policies`` only the documents from that folder and ``ingest catalog/new.csv`` only
    those from new.csv, so naming a part never wipes the rest of the catalog."""
    return [display_path(path, root) for path in paths]


def catalog_root(paths: Sequence[Path]) -> Path:
    """The folder that ids and sources are relative to: the one folder given, or the deepest
    folder holding everything given. Ids then do not depend on the working directory."""
    folders = [p.resolve() if p.is_dir() else p.resolve().parent for p in paths]
    return Path(os.path.commonpath(folders)) if folders else Path.cwd()


def choose_catalog_root(paths: Sequence[Path], catalog_dir: Path) -> Path:
    """The catalog root of a command-line ingest: ``catalog_dir`` (RAG_INGEST__CATALOG_DIR)
    when every path lies in it, as for the admin HTTP ingest, so ``ingest data/catalog/policies``
    names and syncs the same documents as ``POST /admin/ingest {"path": "policies"}``; else the
    deepest folder holding the paths (``catalog_root``)."""
    if paths and all(_lies_in(path, catalog_dir) for path in paths):
        return Path(os.path.abspath(catalog_dir))
    return catalog_root(paths)


def _lies_in(path: Path, folder: Path) -> bool:
    return any(
        Path(normal(path)).is_relative_to(normal(folder))
        for normal in (os.path.abspath, os.path.realpath)
    )


def _record(version: int, chunk: Chunk, vector: Vector) -> NewRecord:
    return NewRecord(
        record_id=f"{chunk.chunk_id}@v{version}",
        chunk_id=chunk.chunk_id,
        doc_id=chunk.doc_id,
        text=chunk.text,
        embedding=vector,
        metadata={
            **chunk.metadata,
            "_title": chunk.title,
            "_source": chunk.source,
            "_kind": chunk.kind,
            "_hash": chunk.record_hash,
            "_text_hash": chunk.text_hash,
        },
    )


def _rewrite_everything(
    plan: IngestPlan, chunks: Sequence[Chunk], old_model: str | None
) -> IngestPlan:
    """Vectors of another model cannot be reused or mixed: the whole catalog is re-embedded
    into a new collection, so nothing missing from this catalog can be kept."""
    if plan.kept_docs:
        raise InvalidInput(
            f"the live catalog was embedded with {old_model!r}; switching models re-embeds the "
            f"whole catalog, which cannot keep the {len(plan.kept_docs)} live document(s) "
            "missing from this one (--append, or files with load errors); fix them or ingest "
            "the complete catalog without --append"
        )
    plan.to_write, plan.to_retire = list(chunks), []
    plan.updated_docs |= plan.unchanged_docs
    plan.unchanged_docs = set()
    return plan


def _in_use(live: LiveState) -> set[str]:
    return {name for name in (live.records_collection, live.previous_collection) if name}


def _reuse_pool(live_records: dict[str, LiveRecord]) -> dict[str, str]:
    return {record.text_hash: record.record_id for record in live_records.values()}


def _report(
    version: int, plan: IngestPlan, problems: list[LoadProblem], *, dry_run: bool
) -> IngestReport:
    return IngestReport(
        version_before=version,
        version_after=version,
        published=False,
        dry_run=dry_run,
        documents=len(plan.added_docs | plan.updated_docs | plan.unchanged_docs),
        added=len(plan.added_docs),
        updated=len(plan.updated_docs),
        unchanged=len(plan.unchanged_docs),
        deleted=len(plan.deleted_docs),
        kept=len(plan.kept_docs),
        failed=list(problems),
    )


def _nothing_to_ingest(paths: Sequence[Path], root: Path, problems: list[LoadProblem]) -> str:
    named = ", ".join(printable(display_path(p, root)) for p in paths)
    detail = f"; {len(problems)} problem(s), first: {problems[0]}" if problems else ""
    return f"no documents found in {named}{detail}; the live catalog is unchanged"


def _batches(items: Sequence[Chunk], size: int) -> Iterator[Sequence[Chunk]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _ignore_progress(phase: str, done: int, total: int) -> None:
    return None
