"""Figures and tables of the context coverage study (``bench.context_coverage``): the spread of
each signal per label, a threshold sweep, and the threshold that separates best."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Signal:
    name: str
    what: str
    sweep: tuple[float, ...]  # thresholds shown in the sweep table


SIGNALS: tuple[Signal, ...] = (
    Signal(
        "best_passage",
        "max cosine(second question, context passage vectors as stored in Chroma)",
        (0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50),
    ),
    Signal(
        "query_similarity",
        "cosine(first question, second question)",
        (0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50),
    ),
    Signal(
        "gap_to_fresh",
        "best_passage minus the second question's best score over the whole catalog",
        (-0.40, -0.35, -0.30, -0.25, -0.20, -0.15, -0.10, -0.05, 0.0),
    ),
    Signal(
        "fresh_first_in_context",
        "1 if the second question's own first document is in the context, else 0",
        (0.5,),
    ),
)
SIGNAL_NAMES = tuple(s.name for s in SIGNALS)


@dataclass(frozen=True)
class PairResult:
    """One conversation pair played against the ingested catalog."""

    id: str
    kind: str  # topic_shift | follow_up
    first: str
    question: str
    answers: tuple[str, ...]
    context: list[str]  # distinct doc ids of the first question's top 5, best first
    fresh: list[str]  # the same for the second question retrieved on its own
    signals: dict[str, float]
    embed_ms: float = 0.0  # embedding the second question (every signal needs it)
    nearest_ms: float = 0.0  # its nearest passage in the whole catalog (gap_to_fresh needs it)

    @property
    def covered(self) -> bool:
        """The context already holds a document that answers the second question."""
        return any(doc_id in self.answers for doc_id in self.context)

    @property
    def fresh_holds_answer(self) -> bool:
        return any(doc_id in self.answers for doc_id in self.fresh)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "first": self.first,
            "question": self.question,
            "answers": list(self.answers),
            "context": self.context,
            "fresh": self.fresh,
            "covered": self.covered,
            "fresh_holds_answer": self.fresh_holds_answer,
            "signals": self.signals,
            "embed_ms": self.embed_ms,
            "nearest_ms": self.nearest_ms,
        }


def spread(values: Sequence[float]) -> dict[str, float | int]:
    if not values:
        return {"pairs": 0}
    return {
        "pairs": len(values),
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def shares(pairs: Sequence[PairResult], signal: str, threshold: float) -> dict[str, float | None]:
    """Who a rule "keep the context while ``signal`` >= ``threshold``" treats right."""

    def share(group: list[PairResult], keep: bool) -> float | None:
        if not group:
            return None
        return sum((p.signals[signal] >= threshold) == keep for p in group) / len(group)

    kept = share([p for p in pairs if p.covered], True)
    refreshed = share([p for p in pairs if not p.covered], False)
    figures = {
        "covered_kept": kept,
        "uncovered_refreshed": refreshed,
        "balanced": None if kept is None or refreshed is None else (kept + refreshed) / 2,
        "follow_ups_kept": share([p for p in pairs if p.kind == "follow_up"], True),
        "topic_shifts_refreshed": share([p for p in pairs if p.kind == "topic_shift"], False),
    }
    return {name: None if v is None else round(v, 3) for name, v in figures.items()}


def best_threshold(pairs: Sequence[PairResult], signal: str) -> dict[str, Any]:
    """The threshold with the best mean of covered-kept and uncovered-refreshed shares.

    Candidates are the midpoints between neighbouring values; of equally good ones the widest
    run wins and its middle is taken. ``margin``: distance from the threshold to the nearest
    pair on either side (how far the figures may drift before a pair changes side).
    """
    values = sorted({p.signals[signal] for p in pairs})
    if len(values) < 2:
        return {"threshold": None}
    cuts = [(a + b) / 2 for a, b in itertools.pairwise(values)]
    scored = [(shares(pairs, signal, cut)["balanced"] or 0.0, cut) for cut in cuts]
    best = max(score for score, _ in scored)
    # The longest run of neighbouring cuts with the best score: they split the pairs alike.
    runs: list[list[int]] = []
    for index, (score, _) in enumerate(scored):
        if score == best:
            if runs and runs[-1][-1] == index - 1:
                runs[-1].append(index)
            else:
                runs.append([index])
    run = max(runs, key=lambda r: values[r[-1] + 1] - values[r[0]])
    low, high = values[run[0]], values[run[-1] + 1]
    threshold = (low + high) / 2  # rounded for show only: the margin may be below 0.001
    figures = shares(pairs, signal, threshold)
    misjudged = [p.id for p in pairs if (p.signals[signal] >= threshold) != p.covered]
    return {
        "threshold": round(threshold, 3),
        "margin": round((high - low) / 2, 3),
        **figures,
        "misjudged": misjudged,
        "exact_threshold": threshold,
    }


def left_out_check(pairs: Sequence[PairResult], signal: str) -> dict[str, float | None]:
    """How well the threshold search does on pairs it has not seen: each pair is judged by the
    best threshold of all the others (leave-one-out). Shares judged right, per label."""
    right: dict[bool, list[bool]] = {True: [], False: []}
    for index, pair in enumerate(pairs):
        others = [*pairs[:index], *pairs[index + 1 :]]
        threshold = best_threshold(others, signal).get("exact_threshold")
        if threshold is None:
            continue
        right[pair.covered].append((pair.signals[signal] >= threshold) == pair.covered)
    return {
        "covered": round(sum(right[True]) / len(right[True]), 3) if right[True] else None,
        "not covered": round(sum(right[False]) / len(right[False]), 3) if right[False] else None,
    }


def summarise(pairs: Sequence[PairResult]) -> dict[str, Any]:
    kinds = sorted({p.kind for p in pairs})
    by_signal: dict[str, Any] = {}
    for signal in SIGNALS:
        name = signal.name
        by_signal[name] = {
            "spread": {
                "covered": spread([p.signals[name] for p in pairs if p.covered]),
                "not covered": spread([p.signals[name] for p in pairs if not p.covered]),
                **{
                    kind: spread([p.signals[name] for p in pairs if p.kind == kind])
                    for kind in kinds
                },
            },
            "sweep": [{"threshold": t, **shares(pairs, name, t)} for t in signal.sweep],
            "best": best_threshold(pairs, name),
            "left_out": left_out_check(pairs, name),
        }
    ranked = sorted(
        (n for n in SIGNAL_NAMES if by_signal[n]["best"].get("balanced") is not None),
        key=lambda n: (by_signal[n]["best"]["balanced"], _relative_margin(by_signal[n], pairs, n)),
        reverse=True,
    )
    return {
        "pairs": {kind: sum(p.kind == kind for p in pairs) for kind in kinds},
        "covered": {kind: sum(p.covered for p in pairs if p.kind == kind) for kind in kinds},
        "fresh_holds_answer": {
            kind: sum(p.fresh_holds_answer for p in pairs if p.kind == kind) for kind in kinds
        },
        "follow_ups_not_covered": [p.id for p in pairs if p.kind == "follow_up" and not p.covered],
        "topic_shifts_covered": [p.id for p in pairs if p.kind == "topic_shift" and p.covered],
        "median_ms": {
            "embed": round(statistics.median(p.embed_ms for p in pairs), 2) if pairs else None,
            "nearest": round(statistics.median(p.nearest_ms for p in pairs), 2) if pairs else None,
        },
        "signals": by_signal,
        "ranking": ranked,
        "chosen": ranked[0] if ranked else None,
    }


def _relative_margin(figures: dict[str, Any], pairs: Sequence[PairResult], name: str) -> float:
    """The margin as a share of the signal's range, so that signals of other scales compare."""
    values = [p.signals[name] for p in pairs]
    width = max(values) - min(values)
    margin: float = figures["best"].get("margin", 0.0)
    return margin / width if width else 0.0


def render_markdown(
    catalog: dict[str, Any], summary: dict[str, Any], pairs: Sequence[PairResult]
) -> str:
    pair_counts = ", ".join(f"{n} {kind}" for kind, n in summary["pairs"].items())
    covered = ", ".join(
        f"{summary['covered'][kind]} of {n} {kind}" for kind, n in summary["pairs"].items()
    )
    fresh = ", ".join(
        f"{summary['fresh_holds_answer'][kind]} of {n} {kind}"
        for kind, n in summary["pairs"].items()
    )
    timing = summary["median_ms"]
    lines = [
        f"Catalog: {catalog['name']}, {catalog['documents']:,} documents, "
        f"{catalog['chunks']:,} chunks. Pairs: {pair_counts}. Context: the first question's "
        f"top 5 passages (service `Retriever`, {catalog['mode']}). Covered (the context holds an answer "
        f"document of the second question): {covered}. The second question retrieved on its "
        f"own finds its answer in {fresh}. Passage vectors as stored vs the texts re-embedded: "
        f"largest difference {catalog['stored_vs_reembedded_max_abs_diff']:g}. Median cost of "
        f"the signals: the second question's embedding {timing['embed']} ms (all signals), "
        f"its nearest passage in the catalog {timing['nearest']} ms (`gap_to_fresh`).",
        "",
        "Spread of each signal (min / median / max):",
        "",
        "| signal | covered | not covered | follow_up | topic_shift |",
        "|---|---|---|---|---|",
    ]
    for name in SIGNAL_NAMES:
        cells = [
            _spread_cell(summary["signals"][name]["spread"].get(group, {"pairs": 0}))
            for group in ("covered", "not covered", "follow_up", "topic_shift")
        ]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Best threshold per signal (keep the context while signal >= threshold; margin: "
        "distance to the nearest pair; left out: each pair judged by the best threshold of the "
        "other pairs):",
        "",
        "| signal | threshold | margin | covered kept | not covered refreshed | follow-ups kept "
        "| topic shifts refreshed | left out: covered kept / others refreshed | misjudged |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in summary["ranking"]:
        b = summary["signals"][name]["best"]
        held = summary["signals"][name]["left_out"]
        lines.append(
            f"| `{name}` | {b['threshold']:g} | {b['margin']:g} | {_pct(b['covered_kept'])} "
            f"| {_pct(b['uncovered_refreshed'])} | {_pct(b['follow_ups_kept'])} "
            f"| {_pct(b['topic_shifts_refreshed'])} "
            f"| {_pct(held['covered'])} / {_pct(held['not covered'])} "
            f"| {', '.join(b['misjudged']) or '-'} |"
        )
    lines += [
        "",
        "Threshold sweep (covered kept / not covered refreshed):",
        "",
    ]
    for signal in SIGNALS:
        sweep = summary["signals"][signal.name]["sweep"]
        if len(sweep) < 2:
            continue
        lines += [
            f"| `{signal.name}` >= | "
            + " | ".join(f"{row['threshold']:g}" for row in sweep)
            + " |",
            "|---|" + "---:|" * len(sweep),
            "| covered kept | " + " | ".join(_pct(row["covered_kept"]) for row in sweep) + " |",
            "| not covered refreshed | "
            + " | ".join(_pct(row["uncovered_refreshed"]) for row in sweep)
            + " |",
            "",
        ]
    chosen = summary["chosen"]
    if chosen is not None:
        b = summary["signals"][chosen]["best"]
        lines.append(
            f"Best separation: `{chosen}` >= {b['threshold']:g} (margin {b['margin']:g}): "
            f"{_pct(b['covered_kept'])} of covered pairs kept, "
            f"{_pct(b['uncovered_refreshed'])} of the others refreshed. Misjudged:"
        )
        lines.append("")
        by_id = {p.id: p for p in pairs}
        for pair_id in b["misjudged"]:
            pair = by_id[pair_id]
            verdict = "kept, not covered" if not pair.covered else "refreshed, covered"
            lines.append(
                f"- {pair_id} ({verdict}, {pair.signals[chosen]:+.3f}): "
                f'"{pair.first}" then "{pair.question}"'
            )
    odd = summary["follow_ups_not_covered"] + summary["topic_shifts_covered"]
    if odd:
        lines.append(f"Pairs whose label differs from their kind: {', '.join(odd)}.")
    return "\n".join(lines)


def _spread_cell(s: dict[str, float | int]) -> str:
    if not s.get("pairs"):
        return "-"
    return f"{s['min']:.2f} / {s['median']:.2f} / {s['max']:.2f} ({s['pairs']})"


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f} %"
