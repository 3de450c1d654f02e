"""Small catalogs written into a test's directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CATEGORIES = ["tents", "boots", "jackets", "stoves"]


def product(index: int, **overrides: Any) -> dict[str, Any]:
    category = CATEGORIES[index % len(CATEGORIES)]
    item: dict[str, Any] = {
        "sku": f"SKU-{index:05d}",
        "name": f"{category.title()} model {index}",
        "category": category,
        "brand": "Northwind",
        "price": 50.0 + index,
        "currency": "EUR",
        "stock": index % 7,
        "sizes": ["S", "M", "L"],
        "description": f"Item {index} is a dependable piece of {category} gear for the trail.",
    }
    item.update(overrides)
    return item


def jsonl(*records: object) -> str:
    """The records as JSON Lines, one a line."""
    return "".join(json.dumps(record) + "\n" for record in records)


def write(path: Path, content: str | bytes) -> Path:
    """Write ``content`` at ``path``, making its folders; text is written as UTF-8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def write_products(path: Path, products: list[dict[str, Any]]) -> Path:
    return write(path, jsonl(*products))


def write_policy(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# Returns\n\nYou may return unused items within 30 days.\n\n"
        "## Refunds\n\nRefunds reach your card within 5 business days.\n",
        encoding="utf-8",
    )
    return path
