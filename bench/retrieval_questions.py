"""The labelled question set of the retrieval benchmark, and the script that generates part of it.

    .venv/bin/python -m bench.retrieval_questions     # rewrite the generated lines in place

``bench/data/retrieval_questions.jsonl`` holds one question per line:
``{"id", "kind", "question", "answers": [doc ids], "origin": "hand" | "generated"}``; for
``topic_shift`` and ``follow_up`` also ``"first"``: the question asked before it on the same
conversation; for ``sku`` also ``"variant"``: how the SKU is spelled.

- ``semantic``, ``policy`` and ``topic_shift`` questions are written by hand (``origin: hand``)
  and answered by FAQ or policy sections (a topic shift's second question also by products).
  They do not copy the documents' wording.
- ``follow_up`` pairs (hand-written) are the opposite of a topic shift: the second question
  follows up on the first ("and in blue?", "how long will the repair take?") and its answer
  documents are among the top 5 passages retrieved for the first question (checked with the
  service's retrieval by ``bench.context_coverage``). Such a question is not meant to be
  retrieved on its own, so ``load_questions()`` leaves them out by default: the retrieval
  benchmark scores ``KINDS``; the coverage study asks for ``CONVERSATION_KINDS``.
- ``name`` and ``sku`` questions are generated here from the products, seeded, so the same
  catalog always gives the same lines. SKU questions ask for one product in several spellings
  (``BOT-00012``, ``bot-00012``, ``BOT 00012``, ``BOT00012``, ``bot 00012``). Only products
  whose name is unique among ``generate_products(GENERATED_PRODUCTS, seed=7)`` are drawn, and
  only from the first 320, which are the committed sample catalog: every label holds for both
  catalogs the benchmark ingests.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.repo_paths import SAMPLE_CATALOG

QUESTIONS_FILE = Path(__file__).resolve().parent / "data" / "retrieval_questions.jsonl"
# The kinds the retrieval benchmark scores, each question retrieved on its own.
KINDS = ("semantic", "name", "sku", "policy", "topic_shift")
# Pairs of questions on one conversation: they carry the question before them ("first").
CONVERSATION_KINDS = ("topic_shift", "follow_up")
ALL_KINDS = (*KINDS, "follow_up")
SEED = 13
SKU_PRODUCTS = 12
NAME_PRODUCTS = 20
GENERATED_PRODUCTS = 2_000  # the larger catalog; its first 320 products are the sample's
SKU_TEMPLATES = (
    "Is {sku} in stock?",
    "How much does {sku} cost?",
    "which sizes does {sku} come in",
    "What colours are available for {sku}?",
    "tell me about {sku}",
)
NAME_TEMPLATES = (
    "Is the {name} in stock?",
    "How heavy is the {name}?",
    "What does the {name} cost?",
    "{name} - which sizes can I get?",
    "tell me more about the {name}",
)


@dataclass(frozen=True)
class Question:
    id: str
    kind: str
    question: str
    answers: tuple[str, ...]
    origin: str
    first: str | None = None  # topic_shift, follow_up: the question before it, same conversation
    variant: str | None = None  # sku: how the SKU is spelled (one of SKU_SPELLINGS)

    def as_json(self) -> dict[str, Any]:
        line: dict[str, Any] = {"id": self.id, "kind": self.kind, "question": self.question}
        if self.first is not None:
            line["first"] = self.first
        if self.variant is not None:
            line["variant"] = self.variant
        line |= {"answers": list(self.answers), "origin": self.origin}
        return line


def load_questions(path: Path = QUESTIONS_FILE, kinds: tuple[str, ...] = KINDS) -> list[Question]:
    """The questions of ``kinds``, in file order; every line is checked, whatever its kind."""
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        raw = json.loads(line)
        question = Question(
            id=raw["id"],
            kind=raw["kind"],
            question=raw["question"],
            answers=tuple(raw["answers"]),
            origin=raw["origin"],
            first=raw.get("first"),
            variant=raw.get("variant"),
        )
        if question.kind not in ALL_KINDS or not question.answers:
            raise ValueError(f"{path}:{number}: bad question {raw!r}")
        if (question.kind in CONVERSATION_KINDS) != (question.first is not None):
            raise ValueError(
                f"{path}:{number}: 'first' belongs to {' and '.join(CONVERSATION_KINDS)} only"
            )
        if question.kind in kinds:
            questions.append(question)
    return questions


SKU_SPELLINGS = ("as printed", "lower case", "spaces", "no separator", "lower case, spaces")


def sku_spellings(sku: str) -> list[str]:
    """``BOT-00012`` as customers type it, in the order of ``SKU_SPELLINGS``."""
    spaced = sku.replace("-", " ")
    return [sku, sku.lower(), spaced, sku.replace("-", ""), spaced.lower()]


def generated_questions(products: list[dict[str, Any]], seed: int = SEED) -> list[Question]:
    """SKU and name questions about products with a unique name (seeded draw)."""
    names = Counter(product["name"] for product in products)
    sample = products[: _sample_product_count()]
    unique = [p for p in sample if names[p["name"]] == 1]
    draw = random.Random(seed)
    chosen = draw.sample(unique, SKU_PRODUCTS + NAME_PRODUCTS)
    questions: list[Question] = []
    for product in chosen[:SKU_PRODUCTS]:
        for variant, spelling in zip(SKU_SPELLINGS, sku_spellings(product["sku"]), strict=True):
            text = draw.choice(SKU_TEMPLATES).format(sku=spelling)
            questions.append(_generated("sku", len(questions), text, product["sku"], variant))
    for number, product in enumerate(chosen[SKU_PRODUCTS:]):
        text = draw.choice(NAME_TEMPLATES).format(name=product["name"])
        questions.append(_generated("name", number, text, product["sku"]))
    return questions


def _generated(kind: str, number: int, text: str, sku: str, variant: str | None = None) -> Question:
    return Question(f"{kind}-{number:03d}", kind, text, (sku,), "generated", variant=variant)


def _sample_product_count() -> int:
    with (SAMPLE_CATALOG / "products.jsonl").open(encoding="utf-8") as lines:
        return sum(1 for line in lines if line.strip())


def write_questions(path: Path = QUESTIONS_FILE) -> int:
    """Replace the generated lines of ``path``, keeping the hand-written ones first."""
    from bench.retrieval_catalogs import generated_products

    existing = load_questions(path, ALL_KINDS) if path.exists() else []
    hand = [q for q in existing if q.origin == "hand"]
    questions = hand + generated_questions(generated_products(GENERATED_PRODUCTS))
    text = "".join(json.dumps(q.as_json(), ensure_ascii=False) + "\n" for q in questions)
    path.write_text(text, encoding="utf-8")
    return len(questions) - len(hand)


if __name__ == "__main__":
    written = write_questions()
    print(f"{QUESTIONS_FILE}: {written} generated questions written")
