"""Where load problems go: collected for the ingest report, or raised at once in strict mode."""

from __future__ import annotations

from ingest.documents import LoadProblem
from rag_service.errors import CatalogFormatError


class ProblemLog:
    """Routes every ``CatalogFormatError`` a loader meets: strict raises it, lenient records it.

    Loaders raise ``CatalogFormatError`` where a record or file is bad and let the caller hand it
    here, so strict and lenient runs share one code path and one wording.
    """

    def __init__(self, *, strict: bool) -> None:
        self.strict = strict
        self.problems: list[LoadProblem] = []

    def add(self, error: CatalogFormatError) -> None:
        if self.strict:
            raise error
        self.problems.append(LoadProblem(file=error.file, line=error.line, message=error.reason))

    def report(self, message: str, *, file: str, line: int | None = None) -> None:
        self.add(CatalogFormatError(message, file=file, line=line))
