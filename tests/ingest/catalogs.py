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


def write_products(path: Path, products: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(p) + "\n" for p in products), encoding="utf-8")
    return path


def write_policy(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# Returns\n\nYou may return unused items within 30 days.\n\n"
        "## Refunds\n\nRefunds reach your card within 5 business days.\n",
        encoding="utf-8",
    )
    return path
