"""Run the benchmarks: ``python -m bench [--quick] [--only NAME,...] [--write-docs]``.

A benchmark is a module ``bench.<module>`` with ``def run(quick: bool) -> BenchResult``: the
result has ``.markdown`` (its tables) and ``.data`` (JSON-ready). Modules are imported only when
selected, and a benchmark whose module does not exist (yet) is skipped with a note. The herd
benchmark predates this interface and is adapted here from ``bench.herd.run_herd``.

Every result is printed and written to bench/results/<name>.json; with ``--write-docs`` its
"latest figures" block in docs/benchmarks.md, between ``<!-- bench:<name>:start -->`` and
``<!-- bench:<name>:end -->``, is replaced (date, machine, exact command, tables). The prose
around the markers is left alone; a benchmark without markers gets a section appended.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.repo_paths import REPO_ROOT
from bench.result_output import BenchResult, results_file, save_json

DOCS_FILE = REPO_ROOT / "docs" / "benchmarks.md"
BENCHMARKS = {  # name -> module, in the order they run
    "ingest": "bench.ingest_bench",
    "herd": "bench.herd",
    "ttft": "bench.ttft",
    "client_cpu": "bench.client_cpu",
    "concurrency": "bench.concurrency",
    "retrieval": "bench.retrieval_eval",
    "lexical": "bench.lexical_index",
    "context_coverage": "bench.context_coverage",
    "stream_replicas": "bench.stream_replicas",
    "small_model": "bench.small_model_eval",
}
HERD_FULL = {"streams": 1000, "outage_s": 20.0}
HERD_QUICK = {"streams": 200, "outage_s": 5.0}


@dataclass(frozen=True)
class PlainResult:
    """A BenchResult for benchmarks that return a dict and a table of their own."""

    markdown: str
    data: dict[str, Any]


Runner = Callable[[bool], BenchResult]


def find_runner(name: str) -> Runner | str:
    """The benchmark's ``run``, or why it is skipped."""
    module_name = BENCHMARKS[name]
    if importlib.util.find_spec(module_name) is None:
        return f"{module_name} does not exist yet"
    module = importlib.import_module(module_name)
    run = getattr(module, "run", None)
    if callable(run):
        return lambda quick: run(quick=quick)
    if name == "herd" and callable(getattr(module, "run_herd", None)):
        return lambda quick: run_herd_adapted(module, quick)
    return f"{module_name} has no run(quick)"


def run_herd_adapted(module: Any, quick: bool) -> PlainResult:
    """bench.herd.run_herd with the full or quick parameters, and its own table if it has one."""
    parameters = HERD_QUICK if quick else HERD_FULL
    data: dict[str, Any] = asyncio.run(module.run_herd(**parameters))
    render = getattr(module, "render_table", None)
    table = render(data) if callable(render) else None
    markdown = table if isinstance(table, str) else _json_block(data)
    return PlainResult(markdown, data)


def machine_description() -> str:
    """CPUs this process may use, the CPU model and the RAM, e.g. for the docs."""
    cpus = len(os.sched_getaffinity(0))
    model = _first_field(Path("/proc/cpuinfo"), "model name") or "unknown CPU"
    mem_kb = _first_field(Path("/proc/meminfo"), "MemTotal")
    ram = f"{int(mem_kb.split()[0]) / 1024**2:.1f} GiB RAM" if mem_kb else "unknown RAM"
    return f"{cpus} CPU(s), {model}, {ram}"


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the block between ``name``'s markers replaced (or appended as a section)."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    begin = text.find(start)
    finish = text.find(end, begin + len(start)) if begin >= 0 else -1
    if begin >= 0 and finish >= 0:
        return text[:begin] + block + text[finish + len(end) :]
    return f"{text.rstrip()}\n\n## {name}: latest figures\n\n{block}\n"


def latest_figures(result: BenchResult, *, command: str, quick: bool) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    mode = " (quick mode)" if quick else ""
    return (
        f"Latest figures{mode}: {stamp}, on {machine_description()}.  \n"
        f"Command: `{command}`\n\n{result.markdown.strip()}\n"
    )


def write_docs(results: dict[str, BenchResult], *, command: str, quick: bool) -> None:
    text = DOCS_FILE.read_text(encoding="utf-8") if DOCS_FILE.exists() else "# Benchmarks\n"
    for name, result in results.items():
        text = replace_section(text, name, latest_figures(result, command=command, quick=quick))
    DOCS_FILE.parent.mkdir(parents=True, exist_ok=True)
    DOCS_FILE.write_text(text, encoding="utf-8")


def run_benchmarks(names: list[str], *, quick: bool) -> tuple[dict[str, BenchResult], list[str]]:
    """Run ``names`` one after another; the results, and the names that failed."""
    results: dict[str, BenchResult] = {}
    failed: list[str] = []
    for name in names:
        runner = find_runner(name)
        if isinstance(runner, str):
            print(f"## {name}\n\nskipped: {runner}\n", flush=True)
            continue
        started = time.monotonic()
        try:
            result = runner(quick)
        except Exception:  # one broken benchmark must not cost the others' figures
            traceback.print_exc()
            print(f"## {name}\n\nFAILED (traceback above)\n", flush=True)
            failed.append(name)
            continue
        results[name] = result
        save_json(result.data, results_file(name))
        took = time.monotonic() - started
        print(f"## {name} ({took:.0f} s)\n\n{result.markdown.strip()}\n", flush=True)
    return results, failed


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    results, failed = run_benchmarks(args.only, quick=args.quick)
    if args.write_docs and results:
        write_docs(results, command=args.command, quick=args.quick)
        print(f"updated {DOCS_FILE.relative_to(REPO_ROOT)}: {', '.join(results)}")
    return 1 if failed else 0


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated names")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown or not names:
        parser.error(f"--only takes names from {', '.join(BENCHMARKS)}; got {args.only!r}")
    args.only = [name for name in BENCHMARKS if name in names]
    # scripts/bench passes the command it was run as; otherwise this is the command.
    args.command = os.environ.get("BENCH_COMMAND") or shlex.join(["python", "-m", "bench", *argv])
    return args


def _first_field(path: Path, key: str) -> str | None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        label, _, value = line.partition(":")
        if label.strip() == key:
            return value.strip()
    return None


def _json_block(data: dict[str, Any]) -> str:
    return "```json\n" + json.dumps(data, indent=2) + "\n```"


if __name__ == "__main__":
    raise SystemExit(main())
