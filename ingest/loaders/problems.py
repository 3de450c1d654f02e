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

    def add(self, error: CatalogFormatError, *, keeps_live: bool = True) -> None:
        if self.strict:
            raise error
        self.problems.append(
            LoadProblem(
                file=error.file, line=error.line, message=error.reason, keeps_live=keeps_live
            )
        )

    def report(
        self, message: str, *, file: str, line: int | None = None, keeps_live: bool = True
    ) -> None:
        self.add(
            CatalogFormatError(message, file=printable(file), line=line), keeps_live=keeps_live
        )


def printable(name: str) -> str:
    """``name`` as text any encoder takes: a file name in a foreign encoding reaches Python with
    lone surrogates for its bytes, which would fail the JSON of the report; shown as escapes."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")
