"""The committed sample data: generator output, product schema, policies, FAQ and fallback text."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import cast

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
CATALOG = DATA / "catalog"
PRODUCTS = CATALOG / "products.jsonl"
GENERATOR = REPO / "scripts" / "generate_catalog.py"
DOCUMENTED_ARGS = ["--count", "320", "--seed", "7", "--out"]
POLICY_TOPICS = ("shipping", "returns", "warranty", "payment", "sizing")
SKU_PREFIXES = {
    "tents": "TNT",
    "sleeping-bags": "SLB",
    "backpacks": "BPK",
    "hiking-boots": "BOT",
    "jackets": "JKT",
    "trail-running-shoes": "TRS",
    "climbing": "CLM",
    "cooking": "STV",
    "lighting": "LGT",
    "water-filtration": "WTR",
}
# Products whose size labels must all appear in a table of the sizing guide.
SIZED_CATEGORIES = ("tents", "sleeping-bags", "backpacks", "hiking-boots", "jackets")
SIZED_CLIMBING = ("climbing shoe", "sport climbing harness", "climbing helmet")
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")

Product = dict[str, object]


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_catalog", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


GEN = load_generator()
generate_products = cast(Callable[[int, int], list[Product]], GEN.generate_products)
write_jsonl = cast(Callable[[list[Product], Path], int], GEN.write_jsonl)


def committed_products() -> list[Product]:
    lines = PRODUCTS.read_text(encoding="utf-8").splitlines()
    return [cast(Product, json.loads(line)) for line in lines]


def words(text: str) -> int:
    return sum(1 for token in text.split() if re.search(r"\w", token))


def headings(text: str) -> list[str]:
    return re.findall(r"^## (.+)$", text, flags=re.MULTILINE)


def test_committed_catalog_is_the_generator_output(tmp_path: Path) -> None:
    out = tmp_path / "products.jsonl"

    written = write_jsonl(generate_products(320, 7), out)

    assert written == 320
    assert out.read_bytes() == PRODUCTS.read_bytes()


def test_documented_command_reproduces_the_catalog_in_a_fresh_process(tmp_path: Path) -> None:
    out = tmp_path / "cli.jsonl"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # output must not depend on hash order

    subprocess.run(
        [sys.executable, str(GENERATOR), *DOCUMENTED_ARGS, str(out)],
        check=True,
        capture_output=True,
        env=env,
        timeout=60,
    )

    assert out.read_bytes() == PRODUCTS.read_bytes()


def test_catalog_has_enough_products_and_categories() -> None:
    products = committed_products()
    per_category: dict[str, int] = {}
    for product in products:
        category = str(product["category"])
        per_category[category] = per_category.get(category, 0) + 1

    assert len(products) >= 300
    assert set(per_category) == set(SKU_PREFIXES)
    assert min(per_category.values()) >= 15
    assert len({product["brand"] for product in products}) == 15


def test_skus_are_unique_and_name_their_category() -> None:
    products = committed_products()
    skus = [str(product["sku"]) for product in products]

    assert len(set(skus)) == len(skus)
    for product in products:
        prefix = SKU_PREFIXES[str(product["category"])]
        assert re.fullmatch(rf"{prefix}-\d{{5}}", str(product["sku"])), product["sku"]


REQUIRED_KEY_ORDER = [
    "sku",
    "name",
    "category",
    "brand",
    "price",
    "currency",
    "stock",
    "sizes",
    "description",
]


def field_problems(product: Product) -> list[str]:
    """What is wrong with one record's required and common optional fields (empty: nothing)."""
    checks = {
        "key order": list(product)[:9] == REQUIRED_KEY_ORDER,
        "name": isinstance(product["name"], str) and bool(product["name"]),
        "category": re.fullmatch(r"[a-z]+(-[a-z]+)*", str(product["category"])) is not None,
        "price": isinstance(product["price"], float)
        and 0 < product["price"] < 1000
        and round(product["price"], 2) == product["price"],
        "currency": product["currency"] == "EUR",
        "stock": isinstance(product["stock"], int) and product["stock"] >= 0,
        "sizes": isinstance(product["sizes"], list)
        and bool(product["sizes"])
        and all(isinstance(size, str) for size in product["sizes"]),
        "weight_g": isinstance(product["weight_g"], int),
        "tags": isinstance(product["tags"], list)
        and all(isinstance(tag, str) for tag in product["tags"]),
        "rating": "rating" not in product
        or (isinstance(product["rating"], float) and 1.0 <= product["rating"] <= 5.0),
    }
    return [f"{product['sku']}: {name}" for name, ok in checks.items() if not ok]


def description_problems(product: Product) -> list[str]:
    description = str(product["description"])
    sentences = SENTENCE_BREAK.split(description)
    ok = (
        2 <= len(sentences) <= 5
        and all(sentence.endswith(".") for sentence in sentences)
        and "{" not in description
        and "  " not in description
    )
    return [] if ok else [f"{product['sku']}: {description}"]


def test_product_fields_are_present_and_typed() -> None:
    problems = [problem for product in committed_products() for problem in field_problems(product)]

    assert not problems


def test_field_check_catches_a_broken_record() -> None:
    broken = {**committed_products()[0], "price": "12.50", "currency": "USD", "sizes": []}

    assert field_problems(broken) == [
        f"{broken['sku']}: price",
        f"{broken['sku']}: currency",
        f"{broken['sku']}: sizes",
    ]


def test_descriptions_are_two_to_five_finished_sentences() -> None:
    problems = [p for product in committed_products() for p in description_problems(product)]

    assert not problems


def test_catalog_is_varied() -> None:
    products = committed_products()
    out_of_stock = [product for product in products if product["stock"] == 0]

    assert len({product["description"] for product in products}) == len(products)
    assert len({product["name"] for product in products}) == len(products)
    assert 10 <= len(out_of_stock) <= 60
    assert len({product["subcategory"] for product in products}) >= 40


def test_size_labels_appear_in_the_sizing_guide() -> None:
    sizing = (CATALOG / "policies" / "sizing.md").read_text(encoding="utf-8")
    missing = {
        f"{product['sku']}: {size}"
        for product in committed_products()
        if product["category"] in SIZED_CATEGORIES
        or product["category"] == "trail-running-shoes"
        or product["subcategory"] in SIZED_CLIMBING
        for size in cast(list[str], product["sizes"])
        if f"| {size} |" not in sizing
    }

    assert not missing


def test_warranty_table_lists_every_brand_with_its_categories() -> None:
    warranty = (CATALOG / "policies" / "warranty.md").read_text(encoding="utf-8")
    rows = {
        cells[0]: cells[1].replace("-", " ")
        for line in warranty.splitlines()
        if line.startswith("| ")
        and (cells := [cell.strip() for cell in line.strip("|").split("|")])
    }
    brand_categories: dict[str, set[str]] = {}
    for product in committed_products():
        categories = brand_categories.setdefault(str(product["brand"]), set())
        categories.add(str(product["category"]).replace("-", " "))

    for brand, categories in brand_categories.items():
        assert brand in rows, brand
        assert all(category in rows[brand] for category in categories), (brand, categories)


@pytest.mark.parametrize("topic", POLICY_TOPICS)
def test_policies_are_hand_written_markdown_of_the_right_length(topic: str) -> None:
    text = (CATALOG / "policies" / f"{topic}.md").read_text(encoding="utf-8")

    assert text.startswith("# ") and topic.rstrip("s")[:4] in text.splitlines()[0].lower()
    assert "Summit & Trail Outfitters" in text
    assert len(headings(text)) >= 5
    assert 400 <= words(text) <= 1200


def test_policy_folder_holds_exactly_the_five_topics() -> None:
    names = sorted(path.stem for path in (CATALOG / "policies").glob("*.md"))

    assert names == sorted(POLICY_TOPICS)


def test_faq_has_fifteen_to_twenty_five_questions() -> None:
    text = (CATALOG / "faq.md").read_text(encoding="utf-8")
    questions = headings(text)

    assert 15 <= len(questions) <= 25
    assert all(question.endswith("?") for question in questions)
    assert len(set(questions)) == len(questions)


def test_fallback_context_is_short_and_sends_people_to_human_support() -> None:
    text = " ".join((DATA / "fallback_context.md").read_text(encoding="utf-8").split())

    assert 150 <= words(text) <= 300
    assert "Summit & Trail Outfitters" in text
    assert "support@summit-trail.example" in text
    assert "+49 761 555 0190" in text
    assert "cannot look up product details" in text


def test_contact_details_are_the_same_everywhere() -> None:
    texts = [path.read_text(encoding="utf-8") for path in CATALOG.rglob("*.md")]

    emails = {email for text in texts for email in re.findall(r"[\w.]+@[\w.-]+\w", text)}
    phones = {phone for text in texts for phone in re.findall(r"\+\d[\d ]{8,}\d", text)}

    assert emails == {"support@summit-trail.example"}
    assert phones == {"+49 761 555 0190"}


def test_twenty_thousand_products_are_unique_and_deterministic() -> None:
    first = generate_products(20000, 7)
    second = generate_products(20000, 7)

    assert len(first) == 20000
    assert len({product["sku"] for product in first}) == 20000
    assert first == second
    assert first[:320] == committed_products()  # a larger count extends the sample


def test_another_seed_gives_another_catalog() -> None:
    assert generate_products(50, 8) != generate_products(50, 7)


def test_count_edge_cases() -> None:
    assert generate_products(0, 7) == []
    with pytest.raises(ValueError, match="must not be negative"):
        generate_products(-1, 7)
