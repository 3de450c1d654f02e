"""Where the benchmarks find the repository's own files: its root and the sample catalog."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CATALOG = REPO_ROOT / "data" / "catalog"
