"""Catalog loaders: product records (JSON Lines, JSON, CSV) and documents (Markdown, text).

    result = load_catalog([Path("catalog")], base_dir=Path("catalog"))
    result.documents  # SourceDocument per product (id = SKU) and per document section
    result.problems   # LoadProblem per skipped record or file, naming file and line

Folders are walked recursively in name order (dot-files and dot-folders skipped), so the same
tree always loads in the same order. A bad record is skipped and reported; with ``strict=True``
the first problem raises ``CatalogFormatError`` instead. Ids must be unique across everything
loaded in one call: a repeated id is reported at the later record.

Text the service cannot carry is a problem at its file and line, never a failure further on: a
NUL character or a lone surrogate (a ``"\\ud800"`` escape) in a record, a NUL in a Markdown or
text file (the file is skipped), JSON nested too deeply for the parser, a file name that is not
UTF-8. With ``base_dir``, nothing whose real path leaves it is read (``paths``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from ingest.documents import LoadResult, SourceDocument
from ingest.loaders.markdown import markdown_documents, slugify, text_document
from ingest.loaders.paths import SUPPORTED_SUFFIXES, CatalogFile, find_catalog_files
from ingest.loaders.problems import ProblemLog
from ingest.loaders.products import REQUIRED_FIELDS, product_document, product_text
from ingest.loaders.records import (
    RawRecord,
    csv_records,
    decode_text,
    decode_utf8,
    json_kind,
    json_records,
    jsonl_records,
    record_text_problem,
)
from rag_service.errors import CatalogFormatError

__all__ = [
    "REQUIRED_FIELDS",
    "SUPPORTED_SUFFIXES",
    "load_catalog",
    "product_text",
    "slugify",
]


def load_catalog(
    paths: Sequence[Path], *, strict: bool = False, base_dir: Path | None = None
) -> LoadResult:
    """Load every catalog file in ``paths`` (files or folders).

    ``source`` of each document and problem is the path relative to ``base_dir``; anything whose
    real path leaves ``base_dir`` is skipped and reported. Without ``base_dir``, sources are the
    paths as given and nothing is confined. Raises ``CatalogFormatError`` only when ``strict``.
    """
    log = ProblemLog(strict=strict)
    result = LoadResult()
    first_seen: dict[str, str] = {}
    for file in find_catalog_files(paths, base_dir, log):
        data = _read(file, log)
        if data is None:
            continue
        result.files.append(file.source)
        for document in _file_documents(file, data, log):
            if _is_new_id(document, first_seen, log):
                result.documents.append(document)
    result.problems = log.problems
    return result


def _read(file: CatalogFile, log: ProblemLog) -> bytes | None:
    try:
        return file.path.read_bytes()
    except OSError as exc:
        log.report(f"cannot read file: {exc.strerror or exc}", file=file.source)
        return None


def _file_documents(file: CatalogFile, data: bytes, log: ProblemLog) -> Iterator[SourceDocument]:
    source = file.source
    if not data.strip():
        log.report("file is empty", file=source)
        return
    try:
        if file.suffix in (".jsonl", ".ndjson"):
            yield from _products(jsonl_records(data, source, log), source, log, from_csv=False)
        elif file.suffix == ".json":
            records = json_records(decode_utf8(data, source), source)
            yield from _products(records, source, log, from_csv=False)
        elif file.suffix == ".csv":
            rows = csv_records(decode_utf8(data, source), source, log, required=REQUIRED_FIELDS)
            yield from _products(rows, source, log, from_csv=True)
        elif file.suffix in (".md", ".markdown"):
            yield from markdown_documents(decode_text(data, source), source)
        else:
            yield from text_document(decode_text(data, source), source)
    except CatalogFormatError as exc:  # the file as a whole is unreadable
        log.add(exc)


def _products(
    records: Iterable[RawRecord], source: str, log: ProblemLog, *, from_csv: bool
) -> Iterator[SourceDocument]:
    for line, value in records:
        if not isinstance(value, dict):
            got = json_kind(value)
            log.report(f"record is not a JSON object (got {got})", file=source, line=line)
            continue
        problem = record_text_problem(value)
        if problem is not None:
            log.report(problem, file=source, line=line)
            continue
        try:
            yield product_document(value, from_csv=from_csv, source=source, line=line)
        except CatalogFormatError as exc:
            log.add(exc)
        except RecursionError:  # a field nested almost as deep as the parser could read
            log.report("record nested too deeply to read", file=source, line=line)


def _is_new_id(document: SourceDocument, first_seen: dict[str, str], log: ProblemLog) -> bool:
    where = document.source if document.line is None else f"{document.source}:{document.line}"
    first = first_seen.get(document.doc_id)
    if first is None:
        first_seen[document.doc_id] = where
        return True
    log.report(
        f"duplicate id '{document.doc_id}' (first seen at {first})",
        file=document.source,
        line=document.line,
    )
    return False
