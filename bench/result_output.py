"""How a benchmark run from its own command line hands over its result: the tables on stdout,
the figures as JSON in a file (``bench/results/<name>.json`` by default, gitignored)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_and_print(markdown: str, data: Any, output: Path) -> None:
    """Write ``data`` as JSON to ``output`` (its folder made if needed) and print ``markdown``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(markdown)
    print(f"\nJSON: {output}")
