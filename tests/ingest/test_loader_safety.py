"""Catalog files that must not be read or cannot be carried: symlinks leaving the catalog root,
NUL characters, lone surrogates, deep nesting, foreign file names. Each one is a problem naming
the file (and line), never an exception out of the loader; strict mode refuses the whole load."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from ingest.documents import LoadProblem
from ingest.loaders import load_catalog
from ingest.loaders.paths import OUTSIDE_GIVEN, OUTSIDE_LINK
from rag_service.errors import CatalogFormatError
from tests.ingest.catalogs import jsonl, product, write, write_policy, write_products

DEEP = 100_000


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A folder outside the catalog, with a file that must never be ingested."""
    folder = tmp_path / "secret"
    write(folder / "secret.md", "# Root password\n\nhunter2\n")
    return folder


def test_a_symlink_leaving_the_catalog_is_skipped_and_reported(
    tmp_path: Path, secret: Path
) -> None:
    catalog = tmp_path / "catalog"
    write_products(catalog / "products.jsonl", [product(1)])
    (catalog / "outdir").symlink_to(secret, target_is_directory=True)
    (catalog / "docs").mkdir()
    (catalog / "docs" / "leak.md").symlink_to(secret / "secret.md")

    result = load_catalog([catalog], base_dir=catalog)

    assert result.files == ["products.jsonl"]
    assert all("hunter2" not in d.text for d in result.documents)
    assert result.problems == [
        LoadProblem("docs/leak.md", None, OUTSIDE_LINK),
        LoadProblem("outdir", None, OUTSIDE_LINK),
    ]
    # Such a file must not shield what it published before from the next sync.
    assert not any(problem.keeps_live for problem in result.problems)
    with pytest.raises(CatalogFormatError) as caught:
        load_catalog([catalog], base_dir=catalog, strict=True)
    assert (caught.value.file, caught.value.reason) == ("docs/leak.md", OUTSIDE_LINK)


def test_a_symlink_staying_inside_the_catalog_is_followed(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    write_policy(catalog / "v2" / "returns.md")
    (catalog / "current").symlink_to(catalog / "v2", target_is_directory=True)
    (catalog / "faq.md").symlink_to(catalog / "v2" / "returns.md")

    result = load_catalog([catalog / "current", catalog / "faq.md"], base_dir=catalog)

    assert result.problems == []
    # Each real file once, named by the path it was found under.
    assert result.files == ["current/returns.md"]
    assert {d.doc_id for d in result.documents} == {
        "current/returns.md#returns",
        "current/returns.md#refunds",
    }


def test_a_path_given_through_a_symlink_that_leaves_the_root_is_refused(
    tmp_path: Path, secret: Path
) -> None:
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "outdir").symlink_to(secret, target_is_directory=True)

    result = load_catalog([catalog / "outdir"], base_dir=catalog)

    assert (result.documents, result.problems) == ([], [LoadProblem("outdir", None, OUTSIDE_GIVEN)])


def test_without_a_root_nothing_is_confined(tmp_path: Path, secret: Path) -> None:
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "outdir").symlink_to(secret, target_is_directory=True)

    result = load_catalog([catalog])

    assert [d.title for d in result.documents] == ["Root password"]


def test_broken_and_looping_symlinks_are_reported(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    write_products(catalog / "p.jsonl", [product(1)])
    (catalog / "gone.md").symlink_to(catalog / "nowhere.md")
    (catalog / "loop.md").symlink_to(catalog / "loop.md")

    result = load_catalog([catalog], base_dir=catalog)

    assert [(p.file, p.message) for p in result.problems] == [
        ("gone.md", "symlink leads nowhere (missing target or a loop)"),
        ("loop.md", "symlink leads nowhere (missing target or a loop)"),
    ]
    assert result.files == ["p.jsonl"]


def test_a_file_name_that_is_not_utf8_is_reported_printably(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    write_products(catalog / "p.jsonl", [product(1)])
    os.close(os.open(os.path.join(os.fsencode(catalog), b"caf\xe9.md"), os.O_CREAT | os.O_WRONLY))

    result = load_catalog([catalog], base_dir=catalog)

    assert result.files == ["p.jsonl"]
    [problem] = result.problems
    assert problem.file == "caf\\udce9.md"
    assert problem.message.startswith("file name is not valid UTF-8")
    json.dumps(problem.file, ensure_ascii=False).encode()  # the report can be sent


GOOD = product(1)
BAD_TEXT = [
    pytest.param(
        "p.jsonl",
        jsonl(GOOD) + '{"sku": "X", "name": "bad \\ud800 name"}\n',
        2,
        "field 'name' contains a lone surrogate (U+D800), which is not a character",
        id="jsonl-lone-surrogate",
    ),
    pytest.param(
        "p.jsonl",
        jsonl(GOOD) + '{"sku": "X", "tags": [{"deep": "nul \\u0000 here"}]}\n',
        2,
        "field 'tags' contains a NUL character (U+0000)",
        id="jsonl-nul-nested",
    ),
    pytest.param(
        "p.jsonl",
        jsonl(GOOD) + '{"sku": "X", "\\udfff": 1}\n',
        2,
        "a field name contains a lone surrogate (U+DFFF), which is not a character",
        id="jsonl-surrogate-key",
    ),
    pytest.param(
        "p.json",
        "[\n" + json.dumps(GOOD) + ',\n{"sku": "X\\ud800"}\n]',
        3,
        "field 'sku' contains a lone surrogate (U+D800), which is not a character",
        id="json-lone-surrogate",
    ),
    pytest.param(
        "p.csv",
        "sku,name,category,price,currency,description\nX,a\x00b,c,1,EUR,d\n",
        2,
        "field 'name' contains a NUL character (U+0000)",
        id="csv-nul",
    ),
    pytest.param(
        "p.md",
        "# Returns\n\nFine.\n\n## Binary\n\nab\x00cd\n",
        7,
        "contains a NUL character (U+0000); is it a binary file?",
        id="markdown-nul",
    ),
    pytest.param(
        "p.txt",
        "line one\n\x00\n",
        2,
        "contains a NUL character (U+0000); is it a binary file?",
        id="text-nul",
    ),
    pytest.param(
        "p.jsonl",
        jsonl(GOOD) + "[" * DEEP + "]" * DEEP + "\n",
        2,
        "JSON nested too deeply to read",
        id="jsonl-deep-line",
    ),
    pytest.param(
        "p.jsonl",
        jsonl(GOOD) + '{"sku": "X", "sizes": ' + "[" * DEEP + "\n",
        2,
        "JSON nested too deeply to read",
        id="jsonl-deep-unclosed",
    ),
    pytest.param(
        "p.json",
        "[\n" + json.dumps(GOOD) + ",\n" + "[" * DEEP + "]" * DEEP + "\n]",
        3,
        "JSON nested too deeply to read (deeper than 100 levels from this line)",
        id="json-deep",
    ),
]


@pytest.mark.parametrize(("name", "content", "line", "message"), BAD_TEXT)
def test_text_that_cannot_be_carried_names_file_and_line(
    tmp_path: Path, name: str, content: str, line: int, message: str
) -> None:
    write(tmp_path / name, content.encode("utf-8", "surrogatepass"))

    result = load_catalog([tmp_path / name], base_dir=tmp_path)

    assert [(p.file, p.line, p.message) for p in result.problems] == [(name, line, message)]
    with pytest.raises(CatalogFormatError) as caught:
        load_catalog([tmp_path / name], base_dir=tmp_path, strict=True)
    assert (caught.value.file, caught.value.line, caught.value.reason) == (name, line, message)


def test_the_good_records_of_such_a_file_still_load(tmp_path: Path) -> None:
    write(tmp_path / "p.jsonl", jsonl(GOOD) + '{"sku": "\\ud800"}\n' + jsonl(product(2)))

    result = load_catalog([tmp_path / "p.jsonl"], base_dir=tmp_path)

    assert [d.doc_id for d in result.documents] == ["SKU-00001", "SKU-00002"]
    assert [p.line for p in result.problems] == [2]


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_no_depth_of_nesting_escapes_as_an_exception(tmp_path: Path, suffix: str) -> None:
    # Near the parser's limit a record parses, yet turning its extra field back into text
    # recurses a few frames deeper; at every depth the record is a document or a problem.
    limit = sys.getrecursionlimit()
    for depth in range(limit - 200, limit + 20):
        nested = '{"a": ' * depth + "1" + "}" * depth
        record = json.dumps({**product(1), "specs": None}).replace("null", nested)
        path = write(tmp_path / f"p{suffix}", f"[\n{record}\n]" if suffix == ".json" else record)

        result = load_catalog([path], base_dir=tmp_path)

        outcome = [d.line for d in result.documents] + [p.line for p in result.problems]
        assert outcome == ([2] if suffix == ".json" else [1]), (depth, result.problems)
