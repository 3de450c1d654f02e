"""Catalog loaders: every format with good input, and every kind of bad input with file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.documents import LoadProblem, SourceDocument
from ingest.loaders import load_catalog
from rag_service.errors import CatalogFormatError
from tests.ingest.catalogs import jsonl, write

BOOT = {
    "sku": "TR-1",
    "name": "Trail Runner",
    "brand": "Acme",
    "category": "boots",
    "price": 129.99,
    "currency": "eur",
    "stock": 12,
    "sizes": ["40", "41"],
    "description": "Waterproof trail shoe. Grippy sole.",
    "weight_g": 350,
    "tags": ["trail", "gtx"],
    "discontinued": False,
    "note": None,
}
CAP = {
    "sku": "C-1",
    "name": "Cap",
    "category": "hats",
    "price": 9,
    "currency": "USD",
    "description": "A cap.",
}
CSV_HEADER = "sku,name,category,price,currency,description,sizes,stock\n"


def load(
    tmp_path: Path, *names: str, strict: bool = False
) -> tuple[list[SourceDocument], list[LoadProblem]]:
    result = load_catalog([tmp_path / name for name in names], strict=strict, base_dir=tmp_path)
    return result.documents, result.problems


# --- good input -------------------------------------------------------------------------------


def test_jsonl_product_becomes_a_readable_document(tmp_path: Path) -> None:
    write(tmp_path / "products.jsonl", "\n" + jsonl(BOOT, CAP))

    documents, problems = load(tmp_path, "products.jsonl")

    assert problems == []
    boot, cap = documents
    assert (boot.doc_id, boot.kind, boot.title, boot.source, boot.line) == (
        "TR-1",
        "product",
        "Trail Runner",
        "products.jsonl",
        2,
    )
    assert boot.text == (
        "Trail Runner\nSKU: TR-1\nBrand: Acme\nCategory: boots\nPrice: 129.99 EUR\n"
        "Availability: in stock: 12\nSizes: 40, 41\nWeight g: 350\nTags: trail, gtx\n"
        "Discontinued: no\n\nWaterproof trail shoe. Grippy sole."
    )
    assert boot.metadata == {
        "category": "boots",
        "brand": "Acme",
        "price": 129.99,
        "currency": "EUR",
        "stock": 12,
        "in_stock": True,
        "sizes": "40, 41",
        "weight_g": 350,
        "tags": "trail, gtx",
        "discontinued": False,
    }
    assert cap.line == 3
    assert cap.text == "Cap\nSKU: C-1\nCategory: hats\nPrice: 9.00 USD\n\nA cap."
    assert cap.metadata == {"category": "hats", "price": 9.0, "currency": "USD"}


def test_out_of_stock_and_ndjson(tmp_path: Path) -> None:
    write(tmp_path / "p.ndjson", jsonl({**CAP, "stock": 0, "variants": ["red", "blue"]}))

    (cap,), problems = load(tmp_path, "p.ndjson")

    assert problems == []
    assert "Availability: out of stock\nVariants: red, blue\n" in cap.text
    assert cap.metadata["in_stock"] is False
    assert cap.metadata["variants"] == "red, blue"


def test_json_array_records_carry_the_line_where_each_object_starts(tmp_path: Path) -> None:
    text = "[\n  " + json.dumps(CAP) + ",\n  {\n    " + json.dumps(BOOT)[1:-1] + "\n  }\n]\n"
    write(tmp_path / "p.json", text)

    documents, problems = load(tmp_path, "p.json")

    assert problems == []
    assert [(d.doc_id, d.line) for d in documents] == [("C-1", 2), ("TR-1", 3)]


def test_json_object_with_products_array(tmp_path: Path) -> None:
    body = {"version": 3, "meta": {"products": "no"}, "products": [CAP, BOOT]}
    write(tmp_path / "p.json", json.dumps(body, indent=2))

    documents, problems = load(tmp_path, "p.json")

    assert problems == []
    assert [d.doc_id for d in documents] == ["C-1", "TR-1"]
    assert [d.line for d in documents] == [7, 15]


def test_csv_rows_with_separated_sizes_and_multiline_cells(tmp_path: Path) -> None:
    write(
        tmp_path / "p.csv",
        CSV_HEADER
        + 'C-1,Cap,hats,9.5,usd,"A cap.\nWarm.",S|M| L,3\n'
        + "\n"
        + "C-2,Scarf,hats,19,EUR,A scarf.,one size;kids,\n",
    )

    documents, problems = load(tmp_path, "p.csv")

    assert problems == []
    cap, scarf = documents
    assert (cap.line, scarf.line) == (2, 5)
    assert cap.text == (
        "Cap\nSKU: C-1\nCategory: hats\nPrice: 9.50 USD\nAvailability: in stock: 3\n"
        "Sizes: S, M, L\n\nA cap.\nWarm."
    )
    assert cap.metadata["sizes"] == "S, M, L"
    assert cap.metadata["stock"] == 3
    assert scarf.metadata["sizes"] == "one size, kids"
    assert "stock" not in scarf.metadata


def test_markdown_sections_preamble_and_repeated_headings(tmp_path: Path) -> None:
    write(
        tmp_path / "policies" / "returns.md",
        "\nWelcome to our policies.\n\n# Returns ##\n\nReturn within 30 days.\n\n"
        "```\n# not a heading\n```\n\n### Exceptions\nSale items.\n\n## Empty\n\n"
        "## Returns\nSecond one.\n\n## Über uns\nHallo.\n",
    )

    documents, problems = load(tmp_path, "policies")

    assert problems == []
    assert [(d.doc_id, d.title, d.line) for d in documents] == [
        ("policies/returns.md#_preamble", "returns", 2),
        ("policies/returns.md#returns", "Returns", 4),
        ("policies/returns.md#returns-2", "Returns", 17),
        ("policies/returns.md#uber-uns", "Über uns", 20),
    ]
    preamble, returns = documents[:2]
    assert preamble.text == "Welcome to our policies."
    assert returns.text == (
        "Returns\n\nReturn within 30 days.\n\n```\n# not a heading\n```\n\n"
        "### Exceptions\nSale items."
    )
    assert returns.kind == "document"
    assert returns.metadata == {"category": "policies", "heading": "Returns"}


def test_text_file_is_one_document_and_faq_category(tmp_path: Path) -> None:
    write(tmp_path / "shipping_faq.txt", "\n\nWe ship in 2 days.\n\nFree above 50 EUR.\n")

    (doc,), problems = load(tmp_path, "shipping_faq.txt")

    assert problems == []
    assert (doc.doc_id, doc.title, doc.line, doc.kind) == (
        "shipping_faq.txt",
        "shipping_faq",
        3,
        "document",
    )
    assert doc.text == "We ship in 2 days.\n\nFree above 50 EUR."
    assert doc.metadata == {"category": "faq"}


def test_folders_are_walked_recursively_in_name_order_skipping_hidden(tmp_path: Path) -> None:
    write(tmp_path / "b" / "z.jsonl", jsonl({**CAP, "sku": "Z"}))
    write(tmp_path / "b" / "a.jsonl", jsonl({**CAP, "sku": "A"}))
    write(tmp_path / "a.md", "# Hello\nWorld.\n")
    write(tmp_path / ".git" / "x.jsonl", jsonl({**CAP, "sku": "HIDDEN1"}))
    write(tmp_path / ".hidden.jsonl", jsonl({**CAP, "sku": "HIDDEN2"}))

    result = load_catalog([tmp_path], base_dir=tmp_path)

    assert result.problems == []
    assert result.files == ["a.md", "b/a.jsonl", "b/z.jsonl"]
    assert [d.doc_id for d in result.documents] == ["a.md#hello", "A", "Z"]


def test_source_is_the_path_as_given_without_base_dir(tmp_path: Path) -> None:
    path = write(tmp_path / "p.jsonl", jsonl(CAP))

    result = load_catalog([path])

    assert result.documents[0].source == path.as_posix()
    assert result.files == [path.as_posix()]


def test_a_file_named_twice_is_loaded_once(tmp_path: Path) -> None:
    path = write(tmp_path / "p.jsonl", jsonl(CAP))

    result = load_catalog([tmp_path, path], base_dir=tmp_path)

    assert result.problems == []
    assert [d.doc_id for d in result.documents] == ["C-1"]


def test_twenty_thousand_products_all_load(tmp_path: Path) -> None:
    lines = [{**CAP, "sku": f"SKU-{n}", "stock": n % 3} for n in range(20_000)]
    write(tmp_path / "big.jsonl", jsonl(*lines))

    result = load_catalog([tmp_path / "big.jsonl"])

    assert result.problems == []
    assert len(result.documents) == 20_000
    assert result.documents[-1].line == 20_000


# --- bad input ---------------------------------------------------------------------------------

BAD_INPUTS = [
    pytest.param(
        "p.jsonl",
        jsonl(CAP) + '{"sku": "X", oops}\n',
        2,
        "malformed JSON: Expecting property name enclosed in double quotes (column 14)",
        id="malformed-json-line",
    ),
    pytest.param(
        "p.jsonl", '\n["a"]\n', 2, "record is not a JSON object (got an array)", id="not-object"
    ),
    pytest.param(
        "p.jsonl",
        jsonl({"sku": "X", "category": "c", "currency": "EUR", "description": "d"}),
        1,
        "missing required field(s): name, price",
        id="missing-fields",
    ),
    pytest.param(
        "p.jsonl",
        jsonl({**CAP, "price": "abc"}),
        1,
        "invalid field(s): price must be a number >= 0 (got 'abc')",
        id="price-not-number",
    ),
    pytest.param(
        "p.jsonl",
        jsonl({**CAP, "sku": "A B", "stock": -1, "currency": "EURO", "sizes": {"a": 1}}),
        1,
        "invalid field(s): sku must be 1-128 characters without whitespace (got 'A B'); "
        "currency must be 3 letters (got 'EURO'); stock must be an integer >= 0 (got -1); "
        "sizes must be a list of strings (got {'a': 1})",
        id="several-wrong-types",
    ),
    pytest.param(
        "p.csv",
        CSV_HEADER + "C-1,Cap,hats,abc,USD,d,,\n",
        2,
        "invalid field(s): price must be a number >= 0 (got 'abc')",
        id="csv-price-not-number",
    ),
    pytest.param("p.jsonl", "  \n\n", None, "file is empty", id="empty-file"),
    pytest.param("p.md", "", None, "file is empty", id="empty-markdown"),
    pytest.param(
        "p.jsonl",
        jsonl(CAP) + jsonl({**BOOT, "sku": "C-1"}),
        2,
        "duplicate id 'C-1' (first seen at p.jsonl:1)",
        id="duplicate-id",
    ),
    pytest.param(
        "p.jsonl",
        jsonl(CAP).encode() + b'{"sku": "\xff"}\n',
        2,
        f"not valid UTF-8 at byte offset {len(jsonl(CAP)) + 9}",
        id="not-utf8-jsonl",
    ),
    pytest.param(
        "p.md", b"# A\n\nok\n\xc3\x28\n", 4, "not valid UTF-8 at byte offset 8", id="not-utf8-md"
    ),
    pytest.param(
        "p.csv",
        CSV_HEADER + "C-1,Cap,hats,9,USD,d,S,1\nC-2,Cap,hats\n",
        3,
        "row has 3 columns, expected 8",
        id="csv-wrong-column-count",
    ),
    pytest.param(
        "p.csv",
        "sku,name,category,currency\nC-1,Cap,hats,USD\n",
        1,
        "missing required column(s): price, description",
        id="csv-missing-columns",
    ),
    pytest.param(
        "p.json",
        '{"items": []}',
        1,
        'expected a JSON array of products or an object with a "products" array '
        '(got an object without a "products" array)',
        id="json-wrong-shape",
    ),
    pytest.param(
        "p.json",
        '[\n  {"sku": 1,}\n]',
        2,
        "malformed JSON: Expecting property name enclosed in double quotes (column 13)",
        id="json-malformed",
    ),
    pytest.param(
        "p.json",
        "[\n" + json.dumps(CAP) + ",\n 42\n]",
        3,
        "record is not a JSON object (got a number)",
        id="json-element-not-object",
    ),
    pytest.param(
        "p.xyz",
        "whatever",
        None,
        "unsupported file type '.xyz' (expected .jsonl, .json, .csv, .md, .txt)",
        id="unsupported-extension",
    ),
]


@pytest.mark.parametrize(("name", "content", "line", "message"), BAD_INPUTS)
def test_bad_input_is_reported_with_file_and_line(
    tmp_path: Path, name: str, content: str | bytes, line: int | None, message: str
) -> None:
    write(tmp_path / name, content)

    _, problems = load(tmp_path, name)

    assert problems == [LoadProblem(file=name, line=line, message=message)]


@pytest.mark.parametrize(("name", "content", "line", "message"), BAD_INPUTS)
def test_bad_input_raises_in_strict_mode(
    tmp_path: Path, name: str, content: str | bytes, line: int | None, message: str
) -> None:
    write(tmp_path / name, content)

    with pytest.raises(CatalogFormatError) as caught:
        load(tmp_path, name, strict=True)

    assert (caught.value.file, caught.value.line, caught.value.reason) == (name, line, message)


def test_bad_record_is_skipped_and_the_rest_loads(tmp_path: Path) -> None:
    write(tmp_path / "p.jsonl", jsonl(CAP) + "not json\n" + jsonl({**BOOT, "price": -1}, BOOT))

    documents, problems = load(tmp_path, "p.jsonl")

    assert [d.doc_id for d in documents] == ["C-1", "TR-1"]
    assert [(p.line, p.message) for p in problems] == [
        (2, "malformed JSON: Expecting value (column 1)"),
        (3, "invalid field(s): price must be a number >= 0 (got -1)"),
    ]


def test_missing_path_is_reported(tmp_path: Path) -> None:
    result = load_catalog([tmp_path / "nope.jsonl"], base_dir=tmp_path)

    assert result.problems == [LoadProblem("nope.jsonl", None, "no such file or directory")]
    assert result.files == []
    with pytest.raises(CatalogFormatError) as caught:
        load_catalog([tmp_path / "nope"], base_dir=tmp_path, strict=True)
    assert (caught.value.file, caught.value.line) == ("nope", None)


def test_unsupported_file_inside_a_folder_is_skipped_and_reported(tmp_path: Path) -> None:
    write(tmp_path / "cat" / "notes.pdf", b"%PDF")
    write(tmp_path / "cat" / "README", "read me")
    write(tmp_path / "cat" / "p.jsonl", jsonl(CAP))

    result = load_catalog([tmp_path / "cat"], base_dir=tmp_path)

    assert [d.doc_id for d in result.documents] == ["C-1"]
    assert result.files == ["cat/p.jsonl"]
    assert [str(p) for p in result.problems] == [
        "cat/README: unsupported file type (no extension; expected .jsonl, .json, .csv, .md, .txt)",
        "cat/notes.pdf: unsupported file type '.pdf' (expected .jsonl, .json, .csv, .md, .txt)",
    ]


def test_duplicate_ids_across_files_name_the_first_place(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", CSV_HEADER + "C-1,Cap,hats,9,USD,d,,\n")
    write(tmp_path / "b.json", json.dumps([CAP]))

    result = load_catalog([tmp_path], base_dir=tmp_path)

    assert [d.source for d in result.documents] == ["a.csv"]
    assert result.problems == [
        LoadProblem("b.json", 1, "duplicate id 'C-1' (first seen at a.csv:2)")
    ]


def test_empty_folder_is_not_a_problem(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    result = load_catalog([tmp_path / "empty"], base_dir=tmp_path)

    assert (result.documents, result.problems, result.files) == ([], [], [])
