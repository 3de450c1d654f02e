"""How a benchmark run from its own command line hands over its result: progress lines on
stderr, the tables on stdout, the figures as JSON in a file (``bench/results/<name>.json`` by
default, gitignored), and the goal and notes lines that end its tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def log_to_stderr(message: str) -> None:
    """A benchmark's progress line when its caller gives no ``log``: stdout holds the tables."""
    print(message, file=sys.stderr, flush=True)


def goals_and_notes(goals: dict[str, bool], notes: list[str], heading: str = "Goals") -> list[str]:
    """The lines after a result table: each goal met or MISSED, then the notes as a list."""
    verdicts = ", ".join(f"{name} {'met' if met else 'MISSED'}" for name, met in goals.items())
    return ["", f"{heading}: {verdicts}", "", *(f"- {note}" for note in notes)]


def write_and_print(markdown: str, data: Any, output: Path) -> None:
    """Write ``data`` as JSON to ``output`` (its folder made if needed) and print ``markdown``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(markdown)
    print(f"\nJSON: {output}")
