"""Deterministic generator for the sample outdoor-gear catalog of Summit & Trail Outfitters.

The committed sample is exactly the output of:

    python scripts/generate_catalog.py --count 320 --seed 7 --out data/catalog/products.jsonl

Also importable: ``generate_products(count, seed)`` and ``write_jsonl(products, path)``.
Only the standard library is used and nothing depends on time, uuids or hash order, so the same
count and seed always give byte-identical output. Products are drawn one after another from a
single ``random.Random(seed)``, so a larger count extends a smaller one: the first 320 products of
``generate_products(20000, 7)`` are the committed catalog.

The words (brands, models, sentences, sizes, specs) live in ``scripts/catalog_vocabulary/``: one
TOML file per category and ``shared.toml``. This file is the program that combines them.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tomllib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

DEFAULT_COUNT = 320
DEFAULT_SEED = 7
DEFAULT_OUT = Path("data/catalog/products.jsonl")
VOCABULARY_DIR = Path(__file__).resolve().parent / "catalog_vocabulary"
CURRENCY = "EUR"

SpecValue = int | float | str
# Spec names starting with "_" only feed the description text; the others also become fields.
Specs = tuple[tuple[str, tuple[SpecValue, ...]], ...]
Sizing = Literal["fixed", "footwear", "apparel", "unisex-footwear"]
T = TypeVar("T")


@dataclass(frozen=True)
class Subtype:
    """One kind of product within a category; its texts may use ``{placeholders}``."""

    label: str  # "{volume_l}-litre daypack": used in prose
    noun: str  # "{volume_l} Daypack": ends the product name
    price: tuple[float, float]
    weight_g: tuple[int, int]
    adjectives: tuple[str, ...]
    uses: tuple[str, ...]
    materials: tuple[str, ...]
    features: tuple[str, ...]
    tags: tuple[str, ...]
    size_sets: tuple[tuple[str, ...], ...] = (("One size",),)
    sizing: Sizing = "fixed"  # "fixed": one of size_sets; otherwise a fit from shared.toml
    weight_note: str = ""
    specs: Specs = ()
    lines: tuple[str, ...] = ()  # model-line suffixes; empty: the category's
    closings: tuple[str, ...] = ()  # empty: the category's
    kind: str = ""  # the subcategory field; empty: the label (for labels without placeholders)


@dataclass(frozen=True)
class Category:
    slug: str
    prefix: str  # of the SKUs
    share: int  # relative frequency in the catalog
    brands: tuple[str, ...]
    models: tuple[str, ...]
    lines: tuple[str, ...]
    colors: tuple[str, ...]
    closings: tuple[str, ...]  # a description's optional last sentence
    subtypes: tuple[Subtype, ...]


@dataclass(frozen=True)
class FootwearFit:
    """Footwear cut for ``gender``, in EU sizes from one of first_sizes to one of last_sizes."""

    gender: str
    first_sizes: tuple[int, ...]
    last_sizes: tuple[int, ...]
    weight_note: str  # which size the weight is for
    weight_factor: float  # scales the subtype's weight range


@dataclass(frozen=True)
class ApparelFit:
    gender: str
    size_runs: tuple[tuple[str, ...], ...]
    weight_note: str
    weight_factor: float


@dataclass(frozen=True)
class Vocabulary:
    """Everything the generator draws from, in the order it draws."""

    openings: tuple[str, ...]
    weight_lines: tuple[str, ...]
    footwear_fits: tuple[FootwearFit, ...]
    unisex_footwear_fit: FootwearFit
    apparel_fits: tuple[ApparelFit, ...]
    categories: tuple[Category, ...]


def load_vocabulary(folder: Path = VOCABULARY_DIR) -> Vocabulary:
    """The vocabulary in ``folder``: ``shared.toml`` and the ``<slug>.toml`` of each category.

    Raises ``ValueError`` naming the file for a missing or unknown key or a category file that
    ``shared.toml`` does not list, so a typo cannot silently drop words from the catalog.
    """
    shared = _read_toml(folder / "shared.toml")
    slugs: list[str] = shared["categories"]
    strays = {path.stem for path in folder.glob("*.toml")} - {"shared", *slugs}
    if strays:
        raise ValueError(f"{folder}: category files not listed in shared.toml: {sorted(strays)}")
    try:
        return Vocabulary(
            openings=tuple(shared["openings"]),
            weight_lines=tuple(shared["weight_lines"]),
            footwear_fits=tuple(_build(FootwearFit, fit) for fit in shared["footwear_fits"]),
            unisex_footwear_fit=_build(FootwearFit, shared["unisex_footwear_fit"]),
            apparel_fits=tuple(_build(ApparelFit, fit) for fit in shared["apparel_fits"]),
            categories=tuple(_load_category(folder / f"{slug}.toml", slug) for slug in slugs),
        )
    except (KeyError, TypeError) as error:
        raise ValueError(f"{folder / 'shared.toml'}: {error}") from error


def _load_category(path: Path, slug: str) -> Category:
    table = _read_toml(path)
    try:
        subtypes = tuple(_load_subtype(subtype) for subtype in table.pop("subtypes"))
        category = _build(Category, {**table, "subtypes": subtypes})
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from error
    if category.slug != slug:
        raise ValueError(f"{path}: slug is {category.slug!r}, the file name says {slug!r}")
    return category


def _load_subtype(table: dict[str, Any]) -> Subtype:
    # A TOML table keeps its keys in file order, and the specs are drawn in that order.
    specs = tuple((name, tuple(values)) for name, values in table.pop("specs", {}).items())
    subtype = _build(Subtype, {**table, "specs": specs})
    if subtype.sizing not in get_args(Sizing):
        raise ValueError(f"{subtype.label!r}: unknown sizing {subtype.sizing!r}")
    return subtype


def _build(cls: type[T], table: dict[str, Any]) -> T:
    """``cls`` from a TOML table, lists made tuples; unknown or missing keys raise ``TypeError``."""
    names = {field.name for field in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(table) - names)
    if unknown:
        raise TypeError(f"{cls.__name__}: unknown keys {unknown}")
    return cls(**{name: _tuples(value) for name, value in table.items()})


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value


def _read_toml(path: Path) -> dict[str, Any]:
    with path.open("rb") as file:
        return tomllib.load(file)


def generate_products(
    count: int, seed: int, vocabulary: Vocabulary | None = None
) -> list[dict[str, object]]:
    """``count`` products drawn from ``random.Random(seed)``; same arguments, same products.

    SKUs are ``<PREFIX>-<serial>`` with a serial per category, so they stay unique for any count.
    ``vocabulary`` defaults to the one in ``scripts/catalog_vocabulary/``.
    """
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    vocabulary = vocabulary or load_vocabulary()
    rng = random.Random(seed)
    shares = [category.share for category in vocabulary.categories]
    serials: Counter[str] = Counter()
    name_uses: Counter[str] = Counter()
    products: list[dict[str, object]] = []
    for _ in range(count):
        category = rng.choices(vocabulary.categories, weights=shares)[0]
        serials[category.prefix] += 1
        sku = f"{category.prefix}-{serials[category.prefix]:05d}"
        products.append(_make_product(rng, vocabulary, category, sku, name_uses))
    return products


def write_jsonl(products: Iterable[dict[str, object]], path: Path | str) -> int:
    """Write one JSON object per line (UTF-8, ``\\n``); returns the number of lines written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with target.open("w", encoding="utf-8", newline="\n") as out:
        for product in products:
            out.write(json.dumps(product, ensure_ascii=False) + "\n")
            written += 1
    return written


@dataclass(frozen=True)
class _Fit:
    """Who a product is cut for and the sizes it comes in."""

    gender: str | None  # "Men's", "Women's", "Unisex" or None
    sizes: list[str]
    weight_note: str
    weight_factor: float


def _make_product(
    rng: random.Random,
    vocabulary: Vocabulary,
    category: Category,
    sku: str,
    name_uses: Counter[str],
) -> dict[str, object]:
    subtype = rng.choice(category.subtypes)
    brand = rng.choice(category.brands)
    model = rng.choice(category.models)
    line = rng.choice(subtype.lines or category.lines)
    fit = _pick_fit(rng, vocabulary, subtype)
    specs = {name: rng.choice(values) for name, values in subtype.specs}
    noun = subtype.noun.format_map(specs)
    gender_word = f"{fit.gender} " if fit.gender in ("Men's", "Women's") else ""
    base_name = f"{brand} {model}|{line} {gender_word}{noun}"
    name_uses[base_name] += 1
    edition = "" if name_uses[base_name] == 1 else f" {_roman(name_uses[base_name])}"
    model_full = " ".join(part for part in (model + edition, line) if part)
    weight_g = _round_weight(rng.randint(*subtype.weight_g) * fit.weight_factor)
    product: dict[str, object] = {
        "sku": sku,
        "name": f"{brand} {model_full} {gender_word}{noun}",
        "category": category.slug,
        "brand": brand,
        "price": _price(rng, *subtype.price),
        "currency": CURRENCY,
        "stock": _stock(rng),
        "sizes": fit.sizes,
    }
    facts: dict[str, object] = dict(specs)
    label = subtype.label.format_map(specs)
    adjective = rng.choice(subtype.adjectives)
    facts.update(
        brand=brand,
        model=model_full,
        label=f"{gender_word.lower()}{label}",
        a_adj=f"{_article(adjective)} {adjective}",
        use=rng.choice(subtype.uses),
        weight=_weight_text(weight_g),
        weight_note=fit.weight_note,
    )
    product["description"] = _describe(rng, vocabulary, category, subtype, facts)
    product["subcategory"] = subtype.kind or subtype.label
    if fit.gender is not None:
        product["gender"] = fit.gender.removesuffix("'s").lower()
    product["colors"] = rng.sample(category.colors, k=rng.randint(1, 3))
    product["weight_g"] = weight_g
    product.update((name, value) for name, value in specs.items() if not name.startswith("_"))
    product.update(_reviews_and_tags(rng, subtype))
    return product


def _pick_fit(rng: random.Random, vocabulary: Vocabulary, subtype: Subtype) -> _Fit:
    if subtype.sizing in ("footwear", "unisex-footwear"):
        shoe = (
            rng.choice(vocabulary.footwear_fits)
            if subtype.sizing == "footwear"
            else vocabulary.unisex_footwear_fit
        )
        first, last = rng.choice(shoe.first_sizes), rng.choice(shoe.last_sizes)
        sizes = [f"EU {n}" for n in range(first, last + 1)]
        return _Fit(shoe.gender, sizes, shoe.weight_note, shoe.weight_factor)
    if subtype.sizing == "apparel":
        cut = rng.choice(vocabulary.apparel_fits)
        return _Fit(cut.gender, list(rng.choice(cut.size_runs)), cut.weight_note, cut.weight_factor)
    return _Fit(None, list(rng.choice(subtype.size_sets)), subtype.weight_note, 1.0)


def _describe(
    rng: random.Random,
    vocabulary: Vocabulary,
    category: Category,
    subtype: Subtype,
    facts: dict[str, object],
) -> str:
    """Two to five sentences: opening, then optional material, weight, features and a closing."""
    sentences = [rng.choice(vocabulary.openings)]
    if rng.random() < 0.85:
        sentences.append(rng.choice(subtype.materials))
    if rng.random() < 0.55:
        sentences.append(rng.choice(vocabulary.weight_lines))
    sentences.extend(rng.sample(subtype.features, k=rng.choice((1, 1, 2))))
    if len(sentences) < 5 and rng.random() < 0.5:
        sentences.append(rng.choice(subtype.closings or category.closings))
    return " ".join(sentence.format_map(facts) for sentence in sentences)


def _reviews_and_tags(rng: random.Random, subtype: Subtype) -> dict[str, object]:
    review_count = int(rng.expovariate(1 / 70))
    tags = list(subtype.tags)
    if rng.random() < 0.08:
        tags.append("new")
    extras: dict[str, object] = {"tags": tags}
    if review_count > 0:
        extras["rating"] = round(min(5.0, max(2.8, rng.gauss(4.4, 0.35))), 1)
        if review_count >= 150:
            tags.append("bestseller")
    extras["review_count"] = review_count
    return extras


def _price(rng: random.Random, low: float, high: float) -> float:
    """A shelf price between low and high ending in .90, .95 or .99 (…9.95 above 30 EUR)."""
    raw = rng.uniform(low, high)
    whole = int(raw) if high < 30 else int(raw // 10) * 10 + 9
    cents = rng.choice((0.95, 0.95, 0.95, 0.9, 0.99))
    return round(whole + cents, 2)


def _stock(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.1:
        return 0
    if roll < 0.3:
        return rng.randint(1, 5)
    if roll < 0.8:
        return rng.randint(6, 40)
    return rng.randint(41, 250)


def _round_weight(grams: float) -> int:
    step = 1 if grams < 100 else 5 if grams < 2000 else 50
    return max(step, round(grams / step) * step)


def _weight_text(grams: int) -> str:
    if grams < 1000:
        return f"{grams} g"
    return f"{grams / 1000:.2f}".rstrip("0").rstrip(".") + " kg"


def _article(word: str) -> str:
    return "an" if word[0] in "aeio" or word.startswith("ul") else "a"


def _roman(number: int) -> str:
    numerals = (
        (1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
        (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"),
    )  # fmt: skip
    parts: list[str] = []
    for value, numeral in numerals:
        count, number = divmod(number, value)
        parts.append(numeral * count)
    return "".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="number of products")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON Lines file to write")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    written = write_jsonl(generate_products(args.count, args.seed), args.out)
    print(f"wrote {written} products to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
