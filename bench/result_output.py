"""What every benchmark shares around its figures: the result it hands over (``BenchResult``),
progress lines on stderr, the goal and notes lines that end its tables, and, run from its own
command line (``--quick``, ``--output``), the tables on stdout and the figures as JSON in a file
(``bench/results/<name>.json`` by default, gitignored)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

RESULTS_DIR = Path(__file__).resolve().parent / "results"


class BenchResult(Protocol):
    @property
    def markdown(self) -> str: ...

    @property
    def data(self) -> dict[str, Any]: ...


def results_file(name: str) -> Path:
    """Where a benchmark's JSON goes by default: ``bench/results/<name>.json``."""
    return RESULTS_DIR / f"{name}.json"


def log_to_stderr(message: str) -> None:
    """A benchmark's progress line when its caller gives no ``log``: stdout holds the tables."""
    print(message, file=sys.stderr, flush=True)


def goals_and_notes(goals: dict[str, bool], notes: list[str], heading: str = "Goals") -> list[str]:
    """The lines after a result table: each goal met or MISSED, then the notes as a list."""
    verdicts = ", ".join(f"{name} {'met' if met else 'MISSED'}" for name, met in goals.items())
    return ["", f"{heading}: {verdicts}", "", *(f"- {note}" for note in notes)]


def command_line(
    module: str, description: str | None, *, quick: str, output: Path
) -> argparse.ArgumentParser:
    """A benchmark's own command line with the two options every one has: ``--quick`` (``quick``
    says what it measures then) and ``--output`` (its JSON file, ``output`` by default)."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--output", type=Path, default=output, help="JSON result file")
    return parser


def save_json(data: Any, output: Path) -> None:
    """``data`` as indented JSON in ``output``, its folder made if needed."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_and_print(markdown: str, data: Any, output: Path) -> None:
    """Write ``data`` as JSON to ``output`` and print ``markdown``."""
    save_json(data, output)
    print(markdown)
    print(f"\nJSON: {output}")


def print_result(result: BenchResult, output: Path) -> int:
    """Hand over a result from a benchmark's command line; its exit status (0)."""
    write_and_print(result.markdown, result.data, output)
    return 0


def run_with_options(
    parser: argparse.ArgumentParser, argv: list[str] | None, run: Callable[..., BenchResult]
) -> int:
    """Parse ``argv``, call ``run`` with every option but ``--output`` as the keyword argument of
    the same name (``--quick`` as ``quick``), and hand the result over: for a benchmark whose
    options are the arguments of its ``run``."""
    options = vars(parser.parse_args(argv))
    output = options.pop("output")
    return print_result(run(**options), output)


def quick_or_full(
    argv: list[str] | None, run: Callable[[bool], BenchResult], *, quick: str, output: Path
) -> int:
    """The whole ``main`` of a benchmark whose only options are ``--quick`` and ``--output``: its
    usage names the module ``run`` comes from (also when run as ``python -m``), its description
    is the first paragraph of that module's docstring."""
    module = sys.modules[run.__module__]
    name = module.__spec__.name if module.__spec__ is not None else run.__module__
    description = (module.__doc__ or "").split("\n\n")[0] or None
    return run_with_options(command_line(name, description, quick=quick, output=output), argv, run)
