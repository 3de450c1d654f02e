"""Terminal views of ingestion: a progress bar while it runs, a summary table when it is done."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TimeElapsedColumn
from rich.table import Table

from ingest import IngestReport, ProgressCallback
from rag_service.domain import CatalogInfo

PHASES = {"load": "Loading", "plan": "Comparing", "embed": "Embedding", "publish": "Publishing"}


@contextmanager
def progress_bar(console: Console) -> Iterator[ProgressCallback]:
    """A ProgressCallback that draws one bar per phase (quiet when not a terminal)."""
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(PHASES.get(phase, phase), total=max(total, 1))
            bar.update(tasks[phase], completed=done, total=max(total, 1))

        yield update


def report_table(report: IngestReport) -> Table:
    title = "Dry run: what an ingest would change" if report.dry_run else "Ingest summary"
    table = Table(title=title)
    for column in ("added", "updated", "unchanged", "deleted", "kept", "failed"):
        table.add_column(column, justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("docs/s", justify="right")
    table.add_row(
        str(report.added),
        str(report.updated),
        str(report.unchanged),
        str(report.deleted),
        str(report.kept),
        str(len(report.failed)),
        f"{report.seconds:.2f}",
        f"{report.documents_per_second:.0f}",
    )
    return table


def print_report(console: Console, report: IngestReport) -> None:
    console.print(report_table(report))
    for problem in report.failed[:50]:
        console.print(f"[yellow]skipped[/] {problem}", highlight=False, soft_wrap=True)
    if len(report.failed) > 50:
        console.print(f"... and {len(report.failed) - 50} more problems")
    if report.dry_run:
        console.print(
            f"Nothing written; the live catalog stays at version {report.version_before}."
        )
        if report.needs_confirmation:
            console.print(
                f"[yellow]needs confirmation[/]: this sync would delete {report.deleted} of the "
                f"{report.live_documents} live documents, more than RAG_INGEST__MAX_DELETE_SHARE "
                "allows; the real run is refused without --yes.",
                highlight=False,
                soft_wrap=True,
            )
    elif report.published:
        console.print(
            f"Published catalog version {report.version_after} "
            f"({report.chunks_embedded} chunks embedded, {report.chunks_reused} vectors reused)."
        )
    else:
        console.print(
            f"Nothing changed; the live catalog stays at version {report.version_before}."
        )


def catalog_table(info: CatalogInfo, where: str) -> Table:
    table = Table(title=f"Live catalog ({where})")
    table.add_column("source")
    table.add_column("chunks", justify="right")
    for source, count in sorted(info.sources.items()):
        table.add_row(source, str(count))
    return table


def catalog_summary(info: CatalogInfo) -> str:
    return (
        f"version {info.version} · {info.document_count} documents · {info.chunk_count} chunks"
        f" · model {info.embedding_model or '-'} · updated {info.updated_at or 'never'}"
    )
