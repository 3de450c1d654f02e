"""Finding catalog files: explicit files and folders walked in a stable order, confined to a root.

Symlinks are followed, but nothing is read whose real path leaves the catalog root: a link such
as ``outdir -> /etc`` inside the catalog folder would otherwise publish whatever it points at,
and serve it to clients as a source. Such an entry is skipped and reported, and does not protect
live documents of the same name (see ``LoadProblem.keeps_live``), so the next sync drops
anything such a link published before.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ingest.loaders.problems import ProblemLog
from rag_service.safe_text import text_problem

RECORD_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv")
DOCUMENT_SUFFIXES = (".md", ".markdown", ".txt")
SUPPORTED_SUFFIXES = RECORD_SUFFIXES + DOCUMENT_SUFFIXES
_EXPECTED = "expected .jsonl, .json, .csv, .md, .txt"
OUTSIDE_GIVEN = "its real path lies outside the catalog directory"
OUTSIDE_LINK = "symlink points outside the catalog directory"
NOWHERE = "symlink leads nowhere (missing target or a loop)"


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
        # abspath first, not resolve(): a symlink inside the catalog keeps its catalog-relative
        # name; the real paths second, for a root reached through a symlinked folder (/tmp).
        for normal in (os.path.abspath, os.path.realpath):
            try:
                return Path(normal(path)).relative_to(normal(base_dir)).as_posix()
            except ValueError:
                continue
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
    hidden files and dot-folders met while walking a folder are skipped silently). With a
    ``base_dir``, anything whose real path leaves it is skipped and reported.
    """
    walk = _Walk(log, base_dir)
    found: list[CatalogFile] = []
    seen: set[str] = set()
    for given in paths:
        for file in walk.expand(Path(given)):
            key = os.path.realpath(file.path)
            if key not in seen:
                seen.add(key)
                found.append(file)
    return found


class _Walk:
    def __init__(self, log: ProblemLog, base_dir: Path | None) -> None:
        self.log = log
        self.base_dir = base_dir
        self.real_root = os.path.realpath(base_dir) if base_dir is not None else None
        self.visited: set[str] = set()

    def expand(self, path: Path) -> Iterator[CatalogFile]:
        if not os.path.lexists(path):
            self._report("no such file or directory", path)
        elif self._escapes(path):  # named on purpose, so its live documents wait for a fix
            self._report(OUTSIDE_GIVEN, path)
        elif path.is_dir():
            for file_path in self._walk(path):
                yield from self._supported(file_path)
        elif path.is_file():
            yield from self._supported(path)
        elif path.is_symlink():
            self._report(NOWHERE, path)
        else:
            self._report("not a regular file or folder", path)

    def _escapes(self, path: Path) -> bool:
        if self.real_root is None:
            return False
        real = os.path.realpath(path)
        return real != self.real_root and not real.startswith(self.real_root.rstrip("/") + "/")

    def _report(self, message: str, path: Path, *, keeps_live: bool = True) -> None:
        self.log.report(message, file=display_path(path, self.base_dir), keeps_live=keeps_live)

    def _supported(self, path: Path) -> Iterator[CatalogFile]:
        source = display_path(path, self.base_dir)
        name_problem = text_problem(source)
        if name_problem is not None:  # a name in a foreign encoding, held as lone surrogates
            self.log.report(f"file name is not valid UTF-8 ({name_problem})", file=source)
        elif path.suffix.lower() in SUPPORTED_SUFFIXES:
            yield CatalogFile(path=path, source=source)
        else:
            self.log.report(unsupported_message(path), file=source)

    def _walk(self, folder: Path) -> Iterator[Path]:
        """Files below ``folder`` depth-first, entries sorted by name, dot-entries skipped."""
        real = os.path.realpath(folder)
        if real in self.visited:  # a symlink loop; each real folder is walked once
            return
        self.visited.add(real)
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as exc:
            self._report(f"cannot read folder: {exc.strerror}", folder)
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            child = folder / entry.name
            # Only a symlink can leave the root: every other entry lies inside its folder, and
            # the folders walked are inside the root (each one was checked on the way down).
            if entry.is_symlink() and self._escapes(child):
                self._report(OUTSIDE_LINK, child, keeps_live=False)
            elif _is_dir(entry):
                yield from self._walk(child)
            elif _is_file(entry):
                yield child
            elif entry.is_symlink():
                self._report(NOWHERE, child)


# DirEntry raises for a symlink loop (ELOOP) or a target it may not stat; both are "neither".
def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False
