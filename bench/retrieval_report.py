"""Scores and tables of the retrieval benchmark: hit@1, hit@5 and MRR, latency, topic shifts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.latency_stats import percentile
from bench.retrieval_questions import KINDS, SKU_SPELLINGS


@dataclass(frozen=True)
class Outcome:
    """One question asked of one mode on one catalog."""

    catalog: str
    mode: str
    question: str
    kind: str
    rank: int | None  # of the first answer document among the distinct documents found
    seconds: float
    found: list[str]
    earlier_holds_answer: bool | None = None  # topic_shift: the first question's sources did
    variant: str | None = None  # sku: how the SKU was spelled

    def as_json(self) -> dict[str, Any]:
        return {
            "catalog": self.catalog,
            "mode": self.mode,
            "question": self.question,
            "kind": self.kind,
            "rank": self.rank,
            "ms": round(self.seconds * 1000, 3),
            "found": self.found,
            "earlier_holds_answer": self.earlier_holds_answer,
            "variant": self.variant,
        }


def scores(outcomes: list[Outcome]) -> dict[str, float | int]:
    """hit@1, hit@5 and MRR of ``outcomes`` (the searches return the top 5 passages)."""
    count = len(outcomes)
    if not count:
        return {"questions": 0}
    ranks = [o.rank for o in outcomes]
    return {
        "questions": count,
        "hit@1": round(sum(r == 1 for r in ranks) / count, 3),
        "hit@5": round(sum(r is not None for r in ranks) / count, 3),
        "mrr": round(sum(1 / r for r in ranks if r is not None) / count, 3),
    }


def latency(outcomes: list[Outcome]) -> dict[str, float | int]:
    ordered = sorted(o.seconds for o in outcomes)
    return {
        "queries": len(ordered),
        "median_ms": round(percentile(ordered, 0.5) * 1000, 2),
        "p95_ms": round(percentile(ordered, 0.95) * 1000, 2),
    }


def summarise(outcomes: list[Outcome], catalogs: list[str], modes: list[str]) -> dict[str, Any]:
    """``{catalog: {mode: {"kinds": {kind|"all": scores}, "latency", "topic_shift"}}}``."""
    summary: dict[str, Any] = {}
    for catalog in catalogs:
        summary[catalog] = {}
        for mode in modes:
            mine = [o for o in outcomes if o.catalog == catalog and o.mode == mode]
            kinds = {kind: scores([o for o in mine if o.kind == kind]) for kind in KINDS}
            shifts = [o for o in mine if o.earlier_holds_answer is not None]
            summary[catalog][mode] = {
                "kinds": {
                    **{k: v for k, v in kinds.items() if v["questions"]},
                    "all": scores(mine),
                },
                "latency": latency(mine),
                "sku_spellings": {
                    variant: scores([o for o in mine if o.variant == variant])
                    for variant in SKU_SPELLINGS
                },
                "topic_shift": {
                    "pairs": len(shifts),
                    "fresh_sources_hold_answer": sum(o.rank is not None for o in shifts),
                    "first_question_sources_hold_answer": sum(
                        bool(o.earlier_holds_answer) for o in shifts
                    ),
                },
            }
    return summary


def render_markdown(
    catalogs: list[dict[str, Any]], modes: list[dict[str, str]], summary: dict[str, Any]
) -> str:
    lines = [
        "Catalogs: "
        + "; ".join(
            f"{c['name']}: {c['documents']:,} documents, {c['chunks']:,} chunks" for c in catalogs
        )
        + ". Modes: "
        + "; ".join(f"`{m['name']}`: {m['what']}" for m in modes)
        + ". Top 5 passages per question.",
        "",
        "| catalog | mode | kind | questions | hit@1 | hit@5 | MRR |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for catalog, by_mode in summary.items():
        for mode, figures in by_mode.items():
            for kind, s in figures["kinds"].items():
                name = "**all**" if kind == "all" else kind
                lines.append(
                    f"| {catalog} | {mode} | {name} | {s['questions']} | {s['hit@1']:.2f} "
                    f"| {s['hit@5']:.2f} | {s['mrr']:.2f} |"
                )
    lines += [
        "",
        "SKU questions by spelling of the SKU: hit@5 (hit@1):",
        "",
        "| catalog | mode | " + " | ".join(SKU_SPELLINGS) + " |",
        "|---|---|" + "---:|" * len(SKU_SPELLINGS),
    ]
    for catalog, by_mode in summary.items():
        for mode, figures in by_mode.items():
            cells = [
                f"{s['hit@5']:.2f} ({s['hit@1']:.2f})" if s["questions"] else "n/a"
                for s in figures["sku_spellings"].values()
            ]
            lines.append(f"| {catalog} | {mode} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Time of one query (embedding + search), and what each mode adds at the median over "
        "the bare encoder + Chroma (`raw`) and over today's retrieval (`dense`):",
        "",
        "| catalog | mode | queries | median ms | p95 ms | median over raw ms "
        "| median over dense ms |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for catalog, by_mode in summary.items():
        for mode, figures in by_mode.items():
            t = figures["latency"]
            over = [_added(by_mode, base, mode, t["median_ms"]) for base in ("raw", "dense")]
            lines.append(
                f"| {catalog} | {mode} | {t['queries']} | {t['median_ms']:.2f} "
                f"| {t['p95_ms']:.2f} | {over[0]} | {over[1]} |"
            )
    lines += [
        "",
        "Topic shifts (two questions on one conversation, different topics): does the second "
        "question's answer document come back when it is retrieved fresh, and was it among the "
        "first question's sources (what a context kept from the first turn would offer)?",
        "",
        "| catalog | mode | pairs | in fresh sources | in the first question's sources |",
        "|---|---|---:|---:|---:|",
    ]
    for catalog, by_mode in summary.items():
        for mode, figures in by_mode.items():
            s = figures["topic_shift"]
            lines.append(
                f"| {catalog} | {mode} | {s['pairs']} | {s['fresh_sources_hold_answer']} "
                f"| {s['first_question_sources_hold_answer']} |"
            )
    return "\n".join(lines)


def _added(by_mode: dict[str, Any], base: str, mode: str, median_ms: float) -> str:
    """``mode``'s median minus ``base``'s; blank for the base, the floor (raw), a missing base."""
    if mode in (base, "raw") or base not in by_mode:
        return ""
    return f"{median_ms - by_mode[base]['latency']['median_ms']:+.2f}"
