"""Reading product records out of JSON Lines, JSON and CSV files, each with its line number.

These functions only split a file into raw records; ``products`` checks the fields. File-level
failures raise ``CatalogFormatError``; a bad line or row is handed to the ``ProblemLog`` and the
rest of the file still loads.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Sequence

from ingest.loaders.problems import ProblemLog
from rag_service.errors import CatalogFormatError
from rag_service.safe_text import text_problem

RawRecord = tuple[int | None, object]  # (1-based line where the record starts, parsed value)

_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_SHAPE_MESSAGE = 'expected a JSON array of products or an object with a "products" array'
# json.loads recurses once per level and gives up near the interpreter's recursion limit; a
# product record is a few levels deep, so the line where nesting passes this many levels is
# where to look in a file that was too deep to read.
_SHOWN_NESTING = 100
_TOO_DEEP = "JSON nested too deeply to read"
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[][{}]')


def decode_utf8(data: bytes, source: str, *, line_offset: int = 0, byte_offset: int = 0) -> str:
    """The text of ``data``; a leading BOM is dropped, bad bytes raise with line and offset."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = line_offset + data.count(b"\n", 0, exc.start) + 1
        offset = byte_offset + exc.start
        raise CatalogFormatError(
            f"not valid UTF-8 at byte offset {offset}", file=source, line=line
        ) from None


def jsonl_records(data: bytes, source: str, log: ProblemLog) -> Iterator[RawRecord]:
    """One record per non-blank line; a malformed line (or one with bad bytes) is reported alone."""
    try:
        lines = decode_utf8(data, source).split("\n")
    except CatalogFormatError:
        yield from _jsonl_records_per_line(data, source, log)
        return
    for number, text in enumerate(lines, start=1):
        record = _jsonl_line(text, number, source, log)
        if record is not None:
            yield record


def _jsonl_records_per_line(data: bytes, source: str, log: ProblemLog) -> Iterator[RawRecord]:
    # The slow path, only for files with invalid UTF-8: decode line by line to keep the good ones
    offset = 0
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = decode_utf8(raw, source, line_offset=number - 1, byte_offset=offset)
        except CatalogFormatError as exc:
            log.add(exc)
        else:
            record = _jsonl_line(text, number, source, log)
            if record is not None:
                yield record
        offset += len(raw) + 1


def _jsonl_line(text: str, number: int, source: str, log: ProblemLog) -> RawRecord | None:
    if not text.strip():
        return None
    try:
        return number, json.loads(text)
    except json.JSONDecodeError as exc:
        log.report(f"malformed JSON: {exc.msg} (column {exc.colno})", file=source, line=number)
    except RecursionError:
        log.report(_TOO_DEEP, file=source, line=number)
    return None


def json_records(text: str, source: str) -> list[RawRecord]:
    """The products of a JSON array or of an object's "products" array, with best-effort lines."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogFormatError(
            f"malformed JSON: {exc.msg} (column {exc.colno})", file=source, line=exc.lineno
        ) from None
    except RecursionError:
        line = _deep_nesting_line(text)
        raise CatalogFormatError(
            f"{_TOO_DEEP} (deeper than {_SHOWN_NESTING} levels from this line)",
            file=source,
            line=line,
        ) from None
    if isinstance(data, list):
        items = data
    elif isinstance(data, dict) and isinstance(data.get("products"), list):
        items = data["products"]
    else:
        got = 'an object without a "products" array' if isinstance(data, dict) else json_kind(data)
        raise CatalogFormatError(f"{_SHAPE_MESSAGE} (got {got})", file=source, line=1)
    lines = _element_lines(text, isinstance(data, dict), len(items))
    return list(zip(lines, items, strict=True))


def _element_lines(text: str, in_object: bool, count: int) -> list[int | None]:
    """The line where each array element starts; all None if the text cannot be walked."""
    try:
        start = _products_offset(text) if in_object else _skip_space(text, 0)
        offsets = _array_element_offsets(text, start)
    except (ValueError, IndexError, RecursionError):
        offsets = []
    if len(offsets) != count:
        return [None] * count
    lines: list[int | None] = []
    line, previous = 1, 0
    for offset in offsets:  # increasing, so counting newlines incrementally stays linear
        line += text.count("\n", previous, offset)
        previous = offset
        lines.append(line)
    return lines


def _deep_nesting_line(text: str) -> int | None:
    """The line where the nesting of ``text`` passes ``_SHOWN_NESTING`` levels (strings skipped)."""
    depth = 0
    for token in _JSON_TOKEN.finditer(text):
        bracket = token.group()
        if bracket in "[{":
            depth += 1
            if depth > _SHOWN_NESTING:
                return text.count("\n", 0, token.start()) + 1
        elif bracket in "]}":
            depth -= 1
    return None


def record_text_problem(record: object) -> str | None:
    """What makes a parsed record's text unusable (a NUL, a lone surrogate from a ``\\ud800``
    escape), naming the top-level field; ``None`` when every key and string is fine."""
    if not isinstance(record, dict):
        return None
    for key, value in record.items():
        problem = text_problem(key)
        if problem is not None:
            return f"a field name {problem}"
        problem = _first_text_problem(value)
        if problem is not None:
            return f"field {key[:64]!r} {problem}"
    return None


def _first_text_problem(value: object) -> str | None:
    # A loop over an explicit stack, not recursion: a value may be nested deeply.
    pending = [value]
    while pending:
        item = pending.pop()
        texts: list[str] = []
        if isinstance(item, str):
            texts = [item]
        elif isinstance(item, dict):
            texts = list(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        for text in texts:
            problem = text_problem(text)
            if problem is not None:
                return problem
    return None


def decode_text(data: bytes, source: str) -> str:
    """A Markdown or text file's text; a NUL character (a binary file, most likely) fails the
    file at its line: no reader or embedder expects one, and C code ends strings there."""
    text = decode_utf8(data, source)
    nul = text.find("\x00")
    if nul >= 0:
        raise CatalogFormatError(
            "contains a NUL character (U+0000); is it a binary file?",
            file=source,
            line=text.count("\n", 0, nul) + 1,
        )
    return text


def _products_offset(text: str) -> int:
    """Offset of the top-level "products" array (the last one, as ``json.loads`` keeps)."""
    decoder = json.JSONDecoder()
    position = _skip_space(text, text.index("{") + 1)
    found = -1
    while text[position] != "}":
        key, position = decoder.raw_decode(text, position)
        position = _skip_space(text, _skip_space(text, position) + 1)  # past the ':'
        if key == "products":
            found = position
        _, position = decoder.raw_decode(text, position)
        position = _skip_space(text, position)
        if text[position] == ",":
            position = _skip_space(text, position + 1)
    if found < 0:
        raise ValueError("no products key")
    return found


def _array_element_offsets(text: str, start: int) -> list[int]:
    """Where each element of the array that opens at ``start`` begins."""
    if text[start] != "[":
        raise ValueError("not an array")
    decoder = json.JSONDecoder()
    offsets: list[int] = []
    position = _skip_space(text, start + 1)
    while text[position] != "]":
        offsets.append(position)
        _, position = decoder.raw_decode(text, position)
        position = _skip_space(text, position)
        if text[position] == ",":
            position = _skip_space(text, position + 1)
    return offsets


def _skip_space(text: str, position: int) -> int:
    match = _JSON_SPACE.match(text, position)
    return match.end() if match else position


def json_kind(value: object) -> str:
    """How a JSON value is named in messages ("an array", "a string", ...)."""
    names = {list: "an array", dict: "an object", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def csv_records(
    text: str, source: str, log: ProblemLog, *, required: Sequence[str]
) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows as {column: cell} keyed by the lower-cased header; the header is line 1.

    A header without all ``required`` columns fails the whole file once, not every row.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = _csv_header(next(reader, []), source, required)
        last_line = reader.line_num
        for row in reader:
            start_line, last_line = last_line + 1, reader.line_num
            if not row:  # blank line
                continue
            if len(row) != len(header):
                log.report(
                    f"row has {len(row)} columns, expected {len(header)}",
                    file=source,
                    line=start_line,
                )
                continue
            yield start_line, {name: cell for name, cell in zip(header, row, strict=True) if name}
    except csv.Error as exc:
        raise CatalogFormatError(
            f"malformed CSV: {exc}", file=source, line=reader.line_num
        ) from None


def _csv_header(row: list[str], source: str, required: Sequence[str]) -> list[str]:
    header = [name.strip().lower() for name in row]
    named = [name for name in header if name]
    if not named:
        raise CatalogFormatError("missing CSV header row", file=source, line=1)
    duplicates = sorted({name for name in named if named.count(name) > 1})
    if duplicates:
        raise CatalogFormatError(
            f"duplicate column(s) in header: {', '.join(duplicates)}", file=source, line=1
        )
    missing = [name for name in required if name not in named]
    if missing:
        raise CatalogFormatError(
            f"missing required column(s): {', '.join(missing)}", file=source, line=1
        )
    return header
