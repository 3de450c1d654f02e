"""Finding catalog files: explicit files and folders walked in a stable order."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ingest.loaders.problems import ProblemLog

RECORD_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv")
DOCUMENT_SUFFIXES = (".md", ".markdown", ".txt")
SUPPORTED_SUFFIXES = RECORD_SUFFIXES + DOCUMENT_SUFFIXES
_EXPECTED = "expected .jsonl, .json, .csv, .md, .txt"


@dataclass(frozen=True)
class CatalogFile:
    """One file to load: where it is on disk and how it is named in documents and problems."""

    path: Path
    source: str  # relative to base_dir where possible, POSIX separators

    @property
    def suffix(self) -> str:
        return self.path.suffix.lower()


def display_path(path: Path, base_dir: Path | None) -> str:
    """The path relative to ``base_dir`` when it lies inside it, else as given (POSIX form)."""
    if base_dir is not None:
        # abspath, not resolve(): a symlink inside the catalog keeps its catalog-relative name
        absolute = Path(os.path.abspath(path))
        try:
            return absolute.relative_to(os.path.abspath(base_dir)).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def unsupported_message(path: Path) -> str:
    suffix = path.suffix.lower()
    if not suffix:
        return f"unsupported file type (no extension; {_EXPECTED})"
    return f"unsupported file type '{suffix}' ({_EXPECTED})"


def find_catalog_files(
    paths: Sequence[Path], base_dir: Path | None, log: ProblemLog
) -> list[CatalogFile]:
    """Every supported file under ``paths``, each once, in a deterministic order.

    Missing paths and unsupported files are reported (an explicitly named hidden file is read;
    hidden files and dot-folders met while walking a folder are skipped silently).
    """
    found: list[CatalogFile] = []
    seen: set[str] = set()
    for given in paths:
        path = Path(given)
        for file in _expand(path, base_dir, log):
            key = os.path.realpath(file.path)
            if key not in seen:
                seen.add(key)
                found.append(file)
    return found


def _expand(path: Path, base_dir: Path | None, log: ProblemLog) -> Iterator[CatalogFile]:
    if path.is_dir():
        for file_path in _walk(path, set(), log, base_dir):
            yield from _supported(file_path, base_dir, log)
    elif path.is_file():
        yield from _supported(path, base_dir, log)
    else:
        log.report("no such file or directory", file=display_path(path, base_dir))


def _supported(path: Path, base_dir: Path | None, log: ProblemLog) -> Iterator[CatalogFile]:
    source = display_path(path, base_dir)
    if path.suffix.lower() in SUPPORTED_SUFFIXES:
        yield CatalogFile(path=path, source=source)
    else:
        log.report(unsupported_message(path), file=source)


def _walk(
    folder: Path, visited: set[str], log: ProblemLog, base_dir: Path | None
) -> Iterator[Path]:
    """Files below ``folder`` depth-first, entries sorted by name, dot-entries skipped."""
    real = os.path.realpath(folder)
    if real in visited:  # a symlink loop; each real folder is walked once
        return
    visited.add(real)
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError as exc:
        log.report(f"cannot read folder: {exc.strerror}", file=display_path(folder, base_dir))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        child = folder / entry.name
        if entry.is_dir():
            yield from _walk(child, visited, log, base_dir)
        elif entry.is_file():
            yield child
