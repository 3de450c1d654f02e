"""scripts/generate_catalog.py reads its words from scripts/catalog_vocabulary/.

The outputs the benchmarks and the sample use are pinned by sha256: moving the words to data files
(or any later tidy) must not change a single byte of any catalog a seed gives. The sample data
checks themselves are in tests/test_sample_catalog.py.
"""

from __future__ import annotations

import hashlib
import runpy
import shutil
import string
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
VOCABULARY = REPO / "scripts" / "catalog_vocabulary"
# runpy: the generator is a script, not a package; these are its module globals.
GEN: dict[str, Any] = runpy.run_path(str(REPO / "scripts" / "generate_catalog.py"))
# The facts every description template may use besides its subtype's specs.
DESCRIPTION_FACTS = ("brand", "model", "label", "a_adj", "use", "weight", "weight_note")

# (count, seed): the committed sample, the retrieval and lexical benches' catalogs (seed 7), the
# ingest bench's (seed 1) and its smoke tests' (tests/test_bench_smoke.py).
PINNED_SHA256 = {
    (320, 7): "0ba43293280eb8ec204888b9a05ee1d3537cd24a239ed9177c212afc94b15a45",
    (2000, 7): "40d385ae011c7086aa3266ac26f69b433b3af5fe2680a7e8bdab5c11cb76ffb6",
    (20000, 1): "98e39b233e226c8bb6e9c16c217c3427f72f6d7ab40006f07661f23462486697",
    (40, 1): "7695d071f388cf1eeb402b0b052b87aeff0c22fdec44781c18288cf1c4f3e473",
    (12, 1): "a5c9dd67c078b49493818e8fba0a137a064e8c9c144ba21fba98dbb24fda94e6",
    (50, 8): "44502ab941a523f328c4ff90124f5daeae94b5cefa7b6e05bc5aee987cee29c0",
}


def catalog_sha256(count: int, seed: int, tmp_path: Path, vocabulary: Any = None) -> str:
    out = tmp_path / f"products-{count}-{seed}.jsonl"
    GEN["write_jsonl"](GEN["generate_products"](count, seed, vocabulary), out)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def vocabulary_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "vocabulary"
    shutil.copytree(VOCABULARY, folder)
    return folder


def edit(path: Path, old: str, new: str) -> None:
    """Replace the first ``old`` in ``path``."""
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize(("count", "seed"), sorted(PINNED_SHA256))
def test_catalogs_the_repo_uses_are_byte_identical(count: int, seed: int, tmp_path: Path) -> None:
    assert catalog_sha256(count, seed, tmp_path) == PINNED_SHA256[(count, seed)]


def test_the_output_comes_from_the_vocabulary_files(tmp_path: Path) -> None:
    folder = vocabulary_copy(tmp_path)
    edit(folder / "tents.toml", '"Skarn", ', '"Eskerbrae", ')
    edited = GEN["load_vocabulary"](folder)

    default = GEN["generate_products"](400, 7)
    products = GEN["generate_products"](400, 7, edited)

    renamed = [p for p in products if "Eskerbrae" in str(p["name"])]
    assert renamed and all(p["category"] == "tents" for p in renamed)
    assert not any("Skarn" in str(p["name"]) for p in products)
    # One word swapped for another: the same draws, so every other product is unchanged.
    unchanged = [p for p in products if p not in renamed]
    assert unchanged == [p for p in default if "Skarn" not in str(p["name"])]


def test_reordering_a_list_changes_the_catalog(tmp_path: Path) -> None:
    folder = vocabulary_copy(tmp_path)
    edit(folder / "shared.toml", '"tents",\n    "sleeping-bags",', '"sleeping-bags",\n    "tents",')

    reordered = GEN["load_vocabulary"](folder)

    assert catalog_sha256(320, 7, tmp_path, reordered) != PINNED_SHA256[(320, 7)]


@pytest.mark.parametrize(
    ("name", "old", "new", "refusal"),
    [
        pytest.param(
            "lighting.toml",
            "\nadjectives = ",
            "\nadjective = ",
            r"lighting\.toml: .*unknown keys \['adjective'\]",
            id="unknown-key",
        ),
        pytest.param(
            "cooking.toml", 'prefix = "STV"\n', "", r"cooking\.toml: .*prefix", id="missing-key"
        ),
        pytest.param(
            "jackets.toml",
            'slug = "jackets"',
            'slug = "coats"',
            r"jackets\.toml: slug is 'coats'",
            id="another-categorys-slug",
        ),
        pytest.param(
            "jackets.toml",
            'sizing = "apparel"',
            'sizing = "tailored"',
            r"jackets\.toml: .*unknown sizing 'tailored'",
            id="unknown-sizing",
        ),
    ],
)
def test_a_broken_vocabulary_file_is_refused_naming_it(
    tmp_path: Path, name: str, old: str, new: str, refusal: str
) -> None:
    folder = vocabulary_copy(tmp_path)
    edit(folder / name, old, new)

    with pytest.raises(ValueError, match=refusal):
        GEN["load_vocabulary"](folder)


def test_a_category_file_the_order_does_not_list_is_refused(tmp_path: Path) -> None:
    folder = vocabulary_copy(tmp_path)
    shutil.copy(folder / "tents.toml", folder / "hammocks.toml")

    with pytest.raises(ValueError, match=r"not listed in shared\.toml: \['hammocks'\]"):
        GEN["load_vocabulary"](folder)


def test_every_template_fills_from_the_facts_its_product_has() -> None:
    """A misspelt placeholder would only fail once a seed draws that sentence: check them all."""
    vocabulary = GEN["load_vocabulary"]()
    problems: list[str] = []
    for category in vocabulary.categories:
        for subtype in category.subtypes:
            specs = {name: values[0] for name, values in subtype.specs}
            facts = {**specs, **dict.fromkeys(DESCRIPTION_FACTS, "x")}
            sentences = (
                *vocabulary.openings,
                *vocabulary.weight_lines,
                *subtype.materials,
                *subtype.features,
                *(subtype.closings or category.closings),
            )
            problems += unfillable((subtype.label, subtype.noun), specs, category.slug)
            problems += unfillable(sentences, facts, category.slug)

    assert not problems


def unfillable(templates: tuple[str, ...], facts: dict[str, object], where: str) -> list[str]:
    problems = []
    for template in templates:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
        if names - set(facts):
            problems.append(f"{where}: {template!r} uses {sorted(names - set(facts))}")
        elif "{" in template.format_map(facts):
            problems.append(f"{where}: {template!r} leaves a brace")
    return problems
