"""The difference between the live catalog and a new one, at chunk and document level."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ingest.documents import Chunk
from rag_service.domain import LiveRecord
from rag_service.errors import DeletionNotConfirmed


@dataclass
class IngestPlan:
    """What a re-ingest must write: new chunk records, records to retire, and per-doc verdicts."""

    to_write: list[Chunk] = field(default_factory=list)
    to_retire: list[str] = field(default_factory=list)  # record ids
    added_docs: set[str] = field(default_factory=set)
    updated_docs: set[str] = field(default_factory=set)
    unchanged_docs: set[str] = field(default_factory=set)
    deleted_docs: set[str] = field(default_factory=set)
    kept_docs: set[str] = field(default_factory=set)  # missing, but kept (append / load errors)

    @property
    def changes_anything(self) -> bool:
        return bool(self.to_write or self.to_retire)


def plan_ingest(
    chunks: Sequence[Chunk],
    live: Mapping[str, LiveRecord],
    *,
    delete_missing: bool,
    protected_sources: set[str],
    sync_scope: Collection[str] = (".",),
) -> IngestPlan:
    """Compare by chunk id and record hash; a document changes when any of its chunks does.

    Live documents missing from the new catalog are deleted in sync mode when their source lies
    in ``sync_scope`` (the ingested files and folders, relative to the catalog root; "." is
    everything), except those whose source lies in ``protected_sources`` (files or folders that
    had load errors): a malformed line must not silently delete a product.
    """
    plan = IngestPlan()
    new_ids = {chunk.chunk_id for chunk in chunks}
    live_by_doc: dict[str, list[LiveRecord]] = defaultdict(list)
    for live_record in live.values():
        live_by_doc[live_record.doc_id].append(live_record)
    changed_docs: set[str] = set()
    for chunk in chunks:
        record = live.get(chunk.chunk_id)
        if record is None or record.record_hash != chunk.record_hash:
            plan.to_write.append(chunk)
            changed_docs.add(chunk.doc_id)
            if record is not None:
                plan.to_retire.append(record.record_id)
    new_docs = {chunk.doc_id for chunk in chunks}
    for doc_id in new_docs:
        old = live_by_doc.get(doc_id, [])
        stale_chunks = [r.record_id for r in old if r.chunk_id not in new_ids]
        plan.to_retire.extend(stale_chunks)  # a document that shrank drops its tail chunks
        if not old:
            plan.added_docs.add(doc_id)
        elif doc_id in changed_docs or stale_chunks:
            plan.updated_docs.add(doc_id)
        else:
            plan.unchanged_docs.add(doc_id)
    for doc_id, records in live_by_doc.items():
        if doc_id in new_docs:
            continue
        sources = {r.source for r in records}
        in_scope = any(_within(source, sync_scope) for source in sources)
        protected = any(_within(source, protected_sources) for source in sources)
        if delete_missing and in_scope and not protected:
            plan.deleted_docs.add(doc_id)
            plan.to_retire.extend(r.record_id for r in records)
        else:
            plan.kept_docs.add(doc_id)
    return plan


def _within(source: str, scope: Collection[str]) -> bool:
    return any(s == "." or source == s or source.startswith(s.rstrip("/") + "/") for s in scope)


@dataclass(frozen=True)
class DeletionCheck:
    """How much of the live catalog a plan deletes, against the share allowed unconfirmed."""

    deleted: int
    live_documents: int
    max_share: float
    deleted_sources: dict[str, int]  # documents deleted per source, the largest first

    @property
    def share(self) -> float:
        return self.deleted / self.live_documents if self.live_documents else 0.0

    @property
    def needs_confirmation(self) -> bool:
        return self.share > self.max_share

    def refusal(self) -> DeletionNotConfirmed:
        return DeletionNotConfirmed(
            f"this sync would delete {self.deleted} of the {self.live_documents} documents in "
            f"the live catalog ({self.share:.1%}), more than the {self.max_share:.0%} allowed "
            "without confirmation (RAG_INGEST__MAX_DELETE_SHARE); nothing was changed. Check "
            'the paths (a dry run shows what would change), then repeat with "confirm_deletions"'
            ": true (HTTP) or --yes (CLI) if this is meant",
            details=self.details(),
        )

    def details(self) -> dict[str, Any]:
        return {
            "deleted": self.deleted,
            "live_documents": self.live_documents,
            "share": round(self.share, 4),
            "max_delete_share": self.max_share,
            "deleted_sources": self.deleted_sources,
        }


def check_deletions(
    plan: IngestPlan, live: Mapping[str, LiveRecord], *, max_share: float, shown_sources: int = 10
) -> DeletionCheck:
    """The plan's deletions as a share of the live documents (none live: nothing to delete)."""
    doc_sources = {record.doc_id: record.source for record in live.values()}
    per_source = Counter(doc_sources[doc_id] for doc_id in plan.deleted_docs)
    return DeletionCheck(
        deleted=len(plan.deleted_docs),
        live_documents=len(doc_sources),
        max_share=max_share,
        deleted_sources=dict(per_source.most_common(shown_sources)),
    )
