"""Ingest benchmark: the pipeline against the bare model, on the sample and a generated catalog.

    .venv/bin/python -m bench.ingest_bench            # sample + 20,000 generated products
    .venv/bin/python -m bench.ingest_bench --quick    # sample + 2,000 generated products

Per catalog, three fresh child processes run one after another (never at once: the machine's
cores are the resource being measured), each loading the shipped model and warming it up before
its clock starts, so model load time is excluded everywhere:

- ``ingest``: a full ``IngestPipeline.run`` into an empty embedded Chroma store in a temp dir,
  timed from the call to its return;
- ``reingest``: the same, unchanged catalog again into that store (a new process, as a real
  re-ingest would be);
- ``encode``: the bare ``SentenceTransformer.encode`` of the same chunk texts (same model files
  and loading code, same batch size, ``normalize_embeddings=True``), the upper bound for (a).

Each child reports its ``ru_maxrss`` (RUSAGE_SELF), so peak memory is per run. Goals: (a) ingest
throughput >= 0.9 x bare encode throughput; (b) re-ingest time <= 0.05 x full ingest time.
Results: a Markdown table and bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench.ingest_children import (
    CHILD_KINDS,
    EncodeRun,
    IngestRun,
    bench_settings,
    run_child,
)
from bench.repo_paths import REPO_ROOT, SAMPLE_CATALOG
from bench.result_output import command_line, log_to_stderr, print_result, results_file

GENERATOR = REPO_ROOT / "scripts" / "generate_catalog.py"
RESULTS_FILE = results_file("ingest")
FULL_PRODUCTS = 20_000
QUICK_PRODUCTS = 2_000
GENERATED_SEED = 1
GOAL_THROUGHPUT_RATIO = 0.9  # (a) ingest chunks/s over bare-encode chunks/s, at least
GOAL_REINGEST_RATIO = 0.05  # (b) unchanged re-ingest time over full ingest time, at most
CHILD_TIMEOUT_S = 3600.0  # one child; 20,000 products take minutes, never an hour


class Measurer(Protocol):
    """Runs the three measurements of one catalog (in child processes, or in-process in tests)."""

    def ingest(self, catalog: Path, store: Path) -> IngestRun: ...
    def encode(self, catalog: Path) -> EncodeRun: ...


@dataclass
class CatalogFigures:
    catalog: str
    full: IngestRun
    reingest: IngestRun
    encode: EncodeRun

    @property
    def throughput_ratio(self) -> float:
        """(a): ingest chunks/s over bare encode chunks/s (= encode time over ingest time)."""
        return self.encode.seconds / self.full.seconds

    @property
    def throughput_ratio_cpu(self) -> float:
        """(a) by CPU seconds (all threads): less at the mercy of other load on the machine."""
        return self.encode.cpu_seconds / self.full.cpu_seconds if self.full.cpu_seconds else 0.0

    @property
    def reingest_ratio(self) -> float:
        """(b): re-ingest time over full ingest time."""
        return self.reingest.seconds / self.full.seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "catalog": self.catalog,
            "documents": self.full.documents,
            "chunks": self.full.chunks_embedded,
            "docs_per_s": round(self.full.documents / self.full.seconds, 2),
            "chunks_per_s": round(self.full.chunks_embedded / self.full.seconds, 2),
            "raw_encode_chunks_per_s": round(self.encode.texts / self.encode.seconds, 2),
            "throughput_ratio": round(self.throughput_ratio, 4),
            "throughput_ratio_cpu": round(self.throughput_ratio_cpu, 4),
            "reingest_ratio": round(self.reingest_ratio, 4),
            "full": asdict(self.full),
            "reingest": asdict(self.reingest),
            "encode": asdict(self.encode),
        }


@dataclass
class IngestBenchResult:
    generated_products: int
    catalogs: list[CatalogFigures]
    model: str
    batch_size: int
    notes: list[str] = field(default_factory=list)

    @property
    def goals(self) -> dict[str, bool]:
        return {
            "throughput_ratio_at_least_0.9": all(
                c.throughput_ratio >= GOAL_THROUGHPUT_RATIO for c in self.catalogs
            ),
            "reingest_ratio_at_most_0.05": all(
                c.reingest_ratio <= GOAL_REINGEST_RATIO for c in self.catalogs
            ),
        }

    @property
    def data(self) -> dict[str, Any]:
        return {
            "generated_products": self.generated_products,
            "generated_seed": GENERATED_SEED,
            "model": self.model,
            "batch_size": self.batch_size,
            "goals": self.goals,
            "catalogs": [c.as_dict() for c in self.catalogs],
            "notes": self.notes,
        }

    @property
    def markdown(self) -> str:
        tables = [_figures_table(self), _profile_table(self), _padding_table(self)]
        return "\n\n".join("\n".join(lines) for lines in tables if lines)


class ChildProcesses:
    """Each measurement in a fresh ``python -m bench.ingest_bench --child ...`` process."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self._log = log

    def ingest(self, catalog: Path, store: Path) -> IngestRun:
        return IngestRun(**self._child("ingest", catalog, store))

    def encode(self, catalog: Path) -> EncodeRun:
        return EncodeRun(**self._child("encode", catalog, None))

    def _child(self, kind: str, catalog: Path, store: Path | None) -> dict[str, Any]:
        command = [sys.executable, "-m", "bench.ingest_bench", "--child", kind]
        command += ["--catalog", str(catalog)] + (["--store", str(store)] if store else [])
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        env["ANONYMIZED_TELEMETRY"] = "False"
        started = time.monotonic()
        done = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{kind} child failed ({done.returncode}):\n{done.stderr[-3000:]}")
        self._log(f"  {kind}: {time.monotonic() - started:.1f} s wall, load {_load_average()}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result


def run(
    quick: bool = False,
    *,
    products: int | None = None,
    measurer: Measurer | None = None,
    log: Callable[[str], None] | None = None,
) -> IngestBenchResult:
    """Measure the sample catalog and ``products`` generated ones (20,000; 2,000 if quick)."""
    say = log or log_to_stderr
    count = products if products is not None else (QUICK_PRODUCTS if quick else FULL_PRODUCTS)
    measure = measurer or ChildProcesses(say)
    settings = bench_settings()
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        work = Path(tmp)
        generated = work / "generated"
        generate_catalog(count, generated / "products.jsonl")
        catalogs = [("sample", SAMPLE_CATALOG), (f"generated {count:,}", generated)]
        figures = [
            _measure_catalog(name, path, work / f"store-{index}", measure, say)
            for index, (name, path) in enumerate(catalogs)
        ]
    return IngestBenchResult(
        generated_products=count,
        catalogs=figures,
        model=settings.embedding.model,
        batch_size=settings.embedding.batch_size,
        notes=[
            "model loaded and warmed up before every clock starts (load time excluded)",
            "ingest, re-ingest and bare encode each ran in a fresh process, one after another",
        ],
    )


def _measure_catalog(
    name: str, catalog: Path, store: Path, measure: Measurer, say: Callable[[str], None]
) -> CatalogFigures:
    say(f"ingest bench: {name} ({catalog})")
    full = measure.ingest(catalog, store)
    reingest = measure.ingest(catalog, store)
    encode = measure.encode(catalog)
    figures = CatalogFigures(name, full, reingest, encode)
    _check_invariants(figures)
    return figures


def _check_invariants(figures: CatalogFigures) -> None:
    """A run that did not do what it claims to measure must not produce figures."""
    full, again, encode = figures.full, figures.reingest, figures.encode
    problems = []
    if not full.published or full.chunks_reused or full.chunks_embedded != encode.texts:
        problems.append(f"full ingest embedded {full.chunks_embedded} of {encode.texts} chunks")
    if again.published or again.chunks_embedded or again.documents != full.documents:
        problems.append(f"re-ingest of the unchanged catalog changed it: {again}")
    if problems:
        raise RuntimeError(f"{figures.catalog}: " + "; ".join(problems))


def _figures_table(result: IngestBenchResult) -> list[str]:
    lines = [
        f"Model {result.model}, batch size {result.batch_size}; generated catalog: "
        f"generate_products({result.generated_products}, seed={GENERATED_SEED}).",
        "",
        "| catalog | documents | chunks | full ingest s | docs/s | chunks/s | raw encode s "
        "| ratio (a) | re-ingest s | ratio (b) | peak RSS ingest MB | peak RSS raw encode MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in result.catalogs:
        full = c.full
        lines.append(
            f"| {c.catalog} | {full.documents:,} | {full.chunks_embedded:,} | {full.seconds:.2f} "
            f"| {full.documents / full.seconds:.1f} | {full.chunks_embedded / full.seconds:.1f} "
            f"| {c.encode.seconds:.2f} | {c.throughput_ratio:.3f} | {c.reingest.seconds:.3f} "
            f"| {c.reingest_ratio:.4f} | {_mb(full.peak_rss_mb)} | {_mb(c.encode.peak_rss_mb)} |"
        )
    goals = result.goals
    lines += [
        "",
        "Ratio (a) = raw encode s / full ingest s (= ingest chunks/s over raw encode chunks/s); "
        "ratio (b) = re-ingest s / full ingest s. Peak RSS: ru_maxrss of each run's own process "
        "(model included).",
        "",
        f"Goals: (a) ratio >= {GOAL_THROUGHPUT_RATIO}: "
        f"{_verdict(goals['throughput_ratio_at_least_0.9'])}; "
        f"(b) ratio <= {GOAL_REINGEST_RATIO}: {_verdict(goals['reingest_ratio_at_most_0.05'])}.",
    ]
    return lines


def _profile_table(result: IngestBenchResult) -> list[str]:
    lines = [
        "Where the full ingest's time went (s; `stage` runs in the writer thread, overlapping "
        "the embedding of the next batch):",
        "",
        "| catalog | load + chunk | plan | embed loop | in embed() | stage (overlapped) "
        "| after last batch | retire | publish | GC | model-only RSS MB | load avg (start, end) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in result.catalogs:
        phases, ports = c.full.phases, c.full.port_seconds
        cells = [phases.get(name, 0.0) for name in ("load_and_chunk", "plan", "embed_loop")]
        cells += [ports.get("embed", 0.0), ports.get("stage", 0.0)]
        cells += [phases.get("after_last_batch", 0.0)]
        cells += [ports.get(name, 0.0) for name in ("retire", "publish", "collect_garbage")]
        load = ", ".join(f"{x:.2f}" for x in c.full.load_average)
        lines.append(
            f"| {c.catalog} | "
            + " | ".join(f"{x:.2f}" for x in cells)
            + f" | {_mb(c.full.model_rss_mb)} | {load} |"
        )
    return lines


def _padding_table(result: IngestBenchResult) -> list[str]:
    """Token positions each way of batching makes the model compute (padding included)."""
    measured = [c for c in result.catalogs if c.encode.padding]
    if not measured:
        return []
    batch = result.batch_size
    lines = [
        "Token positions computed (padding included; + = over the real tokens) and CPU seconds "
        "(all threads) of the full ingest and the bare encode:",
        "",
        "| catalog | real tokens | bare encode (1 call) | pipeline (length-sorted) "
        f"| calls of {batch} in catalog order | CPU s ingest | CPU s bare encode "
        "| ratio (a) by CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in measured:
        padding = c.encode.padding
        tokens = padding["tokens"]
        cells = [
            _positions(padding[key], tokens) for key in ("one_call", "pipeline", "catalog_order")
        ]
        lines.append(
            f"| {c.catalog} | {tokens:,} | {' | '.join(cells)} "
            f"| {c.full.cpu_seconds:.1f} | {c.encode.cpu_seconds:.1f} "
            f"| {c.throughput_ratio_cpu:.3f} |"
        )
    return lines


def _positions(computed: int, tokens: int) -> str:
    return f"{computed:,} (+{computed / tokens - 1:.1%})"


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def generate_catalog(count: int, path: Path) -> None:
    """Write ``count`` products with scripts/generate_catalog.py (a script, not a package)."""
    spec = importlib.util.spec_from_file_location("generate_catalog", GENERATOR)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the catalog generator {GENERATOR}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    module.write_jsonl(module.generate_products(count, GENERATED_SEED), path)


def _load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = command_line(
        "bench.ingest_bench", __doc__, quick=f"{QUICK_PRODUCTS:,} products", output=RESULTS_FILE
    )
    parser.add_argument("--products", type=int, default=None, help="generated catalog size")
    parser.add_argument("--child", choices=CHILD_KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--catalog", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args.child, args.catalog, args.store)))
        return 0
    result = run(args.quick, products=args.products)
    return print_result(result, args.output)


if __name__ == "__main__":
    raise SystemExit(main())
