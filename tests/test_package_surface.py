"""Packages are imported through their surface (docs/architecture.md, "Packages and their
surface").

Inside ``rag_service`` and ``ingest``, a module that imports another top-level package
(``rag_service.<package>`` or ``ingest``) imports from the package itself, and only names its
``__init__`` lists in ``__all__``: the modules behind it can then be split, merged or renamed
without touching their users. A module of the same package imports its siblings directly. The
one exception is the composition (``app.py``, ``ingest_composition.py``, ``startup.py``,
``cli/``), which imports each adapter from its module: ``rag_service.adapters`` exports nothing
on purpose (see its docstring).

The imports are read from the source (``ast``), not run, so a breach anywhere (a function body,
a ``TYPE_CHECKING`` block) is found, and each is reported as ``file:line``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("rag_service", "ingest")
# The modules that compose the graph: they alone import adapters, from the adapters' modules.
COMPOSITION = ("rag_service.app", "rag_service.ingest_composition", "rag_service.startup")
COMPOSITION_PACKAGES = ("rag_service.cli",)
ADAPTERS = "rag_service.adapters"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module's dotted name
    path: Path
    line: int
    target: str  # the dotted name imported from (``from <target> import ...``) or imported
    names: tuple[str, ...]  # the names taken from ``target`` (empty for ``import <target>``)

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def shipped_modules() -> Iterator[Path]:
    for package in SHIPPED:
        yield from sorted((ROOT / package).rglob("*.py"))


def imports_in(source: str, module: str, path: Path) -> Iterator[Import]:
    """Every absolute import in ``source``, the source of ``module`` (at ``path``)."""
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names = tuple(alias.name for alias in node.names)
            yield Import(module, path, node.lineno, node.module, names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, path, node.lineno, alias.name, ())


def imports_of(path: Path) -> Iterator[Import]:
    return imports_in(path.read_text(encoding="utf-8"), module_name(path), path)


def top_level(dotted: str) -> str | None:
    """The top-level package or module of the project ``dotted`` belongs to (``rag_service.x``
    or ``ingest``); None outside the project and for the root package ``rag_service`` itself."""
    parts = dotted.split(".")
    if parts[0] == "ingest":
        return "ingest"
    if parts[0] == "rag_service" and len(parts) > 1:
        return f"rag_service.{parts[1]}"
    return None


def is_package(dotted: str) -> bool:
    return (ROOT / Path(*dotted.split(".")) / "__init__.py").is_file()


def is_composition(module: str) -> bool:
    return module in COMPOSITION or any(
        module == package or module.startswith(f"{package}.") for package in COMPOSITION_PACKAGES
    )


def surface_of(package: str) -> frozenset[str] | None:
    """The names in ``package``'s ``__all__`` (read from its source); None without one."""
    init = ROOT / Path(*package.split(".")) / "__init__.py"
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:  # ``__all__: list[str]``
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(target, ast.Name) and target.id == "__all__" for target in targets):
            return frozenset(ast.literal_eval(value))
    return None


def module_breaches(found: Iterable[Import]) -> list[str]:
    """Imports of another package's module (``rag_service.x.y``), but adapters by the
    composition."""
    breaches = []
    for each in found:
        package = top_level(each.target)
        if package is None or package == top_level(each.module) or not is_package(package):
            continue
        if each.target == package:
            continue
        if is_composition(each.module) and top_level(each.target) == ADAPTERS:
            continue
        breaches.append(f"{each.where()}: {each.module} imports {each.target}, not {package}")
    return breaches


def surface_breaches(found: Iterable[Import]) -> list[str]:
    """Names taken from a package that its ``__all__`` does not list."""
    breaches = []
    for each in found:
        package = top_level(each.target)
        if package is None or package == top_level(each.module) or each.target != package:
            continue
        if not is_package(package):
            continue
        surface = surface_of(package)
        if surface is None:
            breaches.append(f"{each.where()}: {package} has no __all__")
            continue
        for name in each.names:
            if name not in surface:
                breaches.append(f"{each.where()}: {name} is not in {package}.__all__")
    return breaches


def all_imports() -> list[Import]:
    return [each for path in shipped_modules() for each in imports_of(path)]


def test_packages_are_imported_from_the_package_not_its_modules() -> None:
    breaches = module_breaches(all_imports())
    assert not breaches, "\n".join(breaches)


def test_names_imported_from_a_package_are_in_its_all() -> None:
    breaches = surface_breaches(all_imports())
    assert not breaches, "\n".join(breaches)


def test_every_package_declares_its_surface() -> None:
    packages = {top_level(module_name(path)) for path in shipped_modules()}
    missing = [p for p in packages if p and is_package(p) and surface_of(p) is None]
    assert sorted(missing) == []


# -- the checks themselves catch what they are for ----------------------------------------------


PROBE = ROOT / "rag_service" / "probe.py"  # where the checked source pretends to be


def parsed(source: str, module: str) -> Iterator[Import]:
    return imports_in(source, module, PROBE)


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (
            "rag_service.health.checks",
            "import os\n\nfrom rag_service.retrieval.freshness import ContextService\n",
            [
                "rag_service/probe.py:3: rag_service.health.checks imports "
                "rag_service.retrieval.freshness, not rag_service.retrieval"
            ],
        ),
        (
            "rag_service.observability.collectors",
            "def f():\n    from ingest.pipeline import IngestPipeline\n",
            [
                "rag_service/probe.py:2: rag_service.observability.collectors imports "
                "ingest.pipeline, not ingest"
            ],
        ),
        (
            "rag_service.health.checks",
            "from rag_service.adapters.chroma_store import ChromaStore\n",
            [
                "rag_service/probe.py:1: rag_service.health.checks imports "
                "rag_service.adapters.chroma_store, not rag_service.adapters"
            ],
        ),
        ("rag_service.app", "from rag_service.adapters.chroma_store import ChromaStore\n", []),
        ("rag_service.cli.commands", "from rag_service.adapters.store_lock import StoreLock\n", []),
        ("rag_service.streaming.answer", "from rag_service.streaming.session import X\n", []),
        ("rag_service.health.checks", "from rag_service.errors import NotFound\n", []),
    ],
)
def test_a_module_of_another_package_is_a_breach(
    module: str, source: str, expected: list[str]
) -> None:
    assert module_breaches(parsed(source, module)) == expected


def test_a_name_outside_all_is_a_breach() -> None:
    source = "from rag_service.retrieval import ContextService, cosine_similarities\n"
    found = surface_breaches(parsed(source, "rag_service.health.checks"))
    assert found == [
        "rag_service/probe.py:1: cosine_similarities is not in rag_service.retrieval.__all__"
    ]
