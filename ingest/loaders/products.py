"""Product records (from JSON Lines, JSON or CSV) checked and turned into source documents.

The document text is what gets embedded and what the LLM reads as context, so it is plain,
labelled lines rather than JSON::

    Trail Runner GTX
    SKU: TR-1
    Brand: Acme
    Category: boots
    Price: 129.99 EUR
    Availability: in stock: 12
    Sizes: 40, 41, 42
    Weight g: 350

    Waterproof trail shoe with a grippy sole.

The first line is the product name (the title), so the chunker can repeat it at the top of every
chunk of a long product; the description is the last paragraph.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeGuard

from ingest.documents import MetadataValue, SourceDocument
from rag_service.errors import CatalogFormatError

REQUIRED_FIELDS = ("sku", "name", "category", "price", "currency", "description")
_LIST_FIELDS = ("sizes", "variants")
_KNOWN_FIELDS = frozenset((*REQUIRED_FIELDS, "brand", "stock", *_LIST_FIELDS))
# Keys that chunking and the vector store put into metadata themselves: extras never shadow them
_RESERVED_METADATA = frozenset(
    {"doc_id", "chunk_index", "chunk_count", "kind", "title", "source", "line", "in_stock"}
)
_MAX_SKU_CHARS = 128
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_LIST_SEPARATOR = re.compile(r"[|;]")

Scalar = str | int | float | bool


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    category: str
    price: float
    currency: str
    description: str
    brand: str | None
    stock: int | None
    lists: dict[str, tuple[str, ...]]  # "sizes" / "variants", only when non-empty
    extras: dict[str, Scalar]  # other fields, scalars kept, lists and objects as text


def product_document(
    record: Mapping[str, object], *, from_csv: bool, source: str, line: int | None
) -> SourceDocument:
    """The product document for one record; raises ``CatalogFormatError`` naming bad fields."""
    product = parse_product(record, from_csv=from_csv, source=source, line=line)
    return SourceDocument(
        doc_id=product.sku,
        kind="product",
        title=product.name,
        text=product_text(product),
        source=source,
        line=line,
        metadata=product_metadata(product),
    )


def parse_product(
    record: Mapping[str, object], *, from_csv: bool, source: str, line: int | None
) -> Product:
    fields = _FieldReader(record, from_csv=from_csv)
    product = Product(
        sku=fields.sku(),
        name=fields.required_text("name"),
        category=fields.required_text("category"),
        price=fields.price(),
        currency=fields.currency(),
        description=fields.required_text("description"),
        brand=fields.optional_text("brand"),
        stock=fields.stock(),
        lists={key: items for key in _LIST_FIELDS if (items := fields.string_list(key))},
        extras=_extras(record),
    )
    if fields.missing or fields.invalid:
        raise CatalogFormatError(fields.complaint(), file=source, line=line)
    return product


def product_text(product: Product) -> str:
    lines = [product.name, f"SKU: {product.sku}"]
    if product.brand:
        lines.append(f"Brand: {product.brand}")
    lines.append(f"Category: {product.category}")
    lines.append(f"Price: {_format_price(product.price)} {product.currency}")
    if product.stock is not None:
        status = f"in stock: {product.stock}" if product.stock > 0 else "out of stock"
        lines.append(f"Availability: {status}")
    for key, items in product.lists.items():
        lines.append(f"{_label(key)}: {', '.join(items)}")
    for key, value in product.extras.items():
        lines.append(f"{_label(key)}: {_format_extra(value)}")
    return "\n".join(lines) + "\n\n" + product.description


def product_metadata(product: Product) -> dict[str, MetadataValue]:
    metadata: dict[str, MetadataValue] = {
        "category": product.category,
        "price": product.price,
        "currency": product.currency,
    }
    if product.brand:
        metadata["brand"] = product.brand
    if product.stock is not None:
        metadata["stock"] = product.stock
        metadata["in_stock"] = product.stock > 0
    for key, items in product.lists.items():
        metadata[key] = ", ".join(items)
    for key, value in product.extras.items():
        if key not in _RESERVED_METADATA:
            metadata[key] = value
    return metadata


class _FieldReader:
    """Reads typed fields from one record and collects what is missing or malformed."""

    def __init__(self, record: Mapping[str, object], *, from_csv: bool) -> None:
        self.record = record
        self.from_csv = from_csv
        self.missing: list[str] = []
        self.invalid: list[str] = []

    def complaint(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"missing required field(s): {', '.join(self.missing)}")
        if self.invalid:
            parts.append(f"invalid field(s): {'; '.join(self.invalid)}")
        return "; ".join(parts)

    def value(self, key: str) -> object | None:
        """The field's value; None, empty and blank strings count as absent."""
        value = self.record.get(key)
        if isinstance(value, str) and not value.strip():
            return None
        return value

    def required(self, key: str) -> object | None:
        value = self.value(key)
        if value is None:
            self.missing.append(key)
        return value

    def required_text(self, key: str) -> str:
        value = self.required(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.invalid.append(f"{key} must be a string (got {_show(value)})")
            return ""
        return value.strip()

    def optional_text(self, key: str) -> str | None:
        value = self.value(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.invalid.append(f"{key} must be a string (got {_show(value)})")
            return None
        return value.strip()

    def sku(self) -> str:
        raw = self.record.get("sku")
        sku = self.required_text("sku")
        if sku and (len(sku) > _MAX_SKU_CHARS or any(char.isspace() for char in sku)):
            self.invalid.append(
                f"sku must be 1-{_MAX_SKU_CHARS} characters without whitespace (got {_show(raw)})"
            )
        return sku

    def currency(self) -> str:
        raw = self.record.get("currency")
        currency = self.required_text("currency")
        if currency and not _CURRENCY.fullmatch(currency):
            self.invalid.append(f"currency must be 3 letters (got {_show(raw)})")
        return currency.upper()

    def price(self) -> float:
        value = self.required("price")
        if value is None:
            return 0.0
        price = _to_float(value, from_csv=self.from_csv)
        if price is None or not math.isfinite(price) or price < 0:
            self.invalid.append(f"price must be a number >= 0 (got {_show(value)})")
            return 0.0
        return price

    def stock(self) -> int | None:
        value = self.value("stock")
        if value is None:
            return None
        stock = _to_int(value, from_csv=self.from_csv)
        if stock is None or stock < 0:
            self.invalid.append(f"stock must be an integer >= 0 (got {_show(value)})")
            return None
        return stock

    def string_list(self, key: str) -> tuple[str, ...]:
        """A list of strings; a string separated by "|" or ";" also counts (CSV cells)."""
        value = self.value(key)
        if value is None:
            return ()
        if isinstance(value, str):
            items = _LIST_SEPARATOR.split(value)
        elif isinstance(value, list) and all(_is_scalar(item) for item in value):
            items = [_format_extra(item) for item in value]
        else:
            self.invalid.append(f"{key} must be a list of strings (got {_show(value)})")
            return ()
        return tuple(stripped for item in items if (stripped := item.strip()))


def _extras(record: Mapping[str, object]) -> dict[str, Scalar]:
    extras: dict[str, Scalar] = {}
    for key, value in record.items():
        if not key or key in _KNOWN_FIELDS or value is None:
            continue
        if isinstance(value, str):
            if value.strip():
                extras[key] = value.strip()
        elif isinstance(value, float) and not math.isfinite(value):
            continue
        elif _is_scalar(value):
            extras[key] = value
        elif isinstance(value, list) and all(_is_scalar(item) for item in value):
            if value:
                extras[key] = ", ".join(_format_extra(item) for item in value)
        else:
            extras[key] = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return extras


def _is_scalar(value: object) -> TypeGuard[Scalar]:
    return isinstance(value, str | int | float | bool)


def _to_float(value: object, *, from_csv: bool) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if from_csv and isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _to_int(value: object, *, from_csv: bool) -> int | None:
    number = _to_float(value, from_csv=from_csv)
    if number is None or not math.isfinite(number) or not number.is_integer():
        return None
    return int(number)


def _format_price(price: float) -> str:
    cents = f"{price:.2f}"
    return cents if float(cents) == price else repr(price)


def _format_extra(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _label(key: str) -> str:
    words = key.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
