"""Chunking: sizes, boundaries, overlap, ids and coverage."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from ingest.chunking import chunk_document, chunk_documents
from ingest.documents import Chunk, SourceDocument
from rag_service.errors import ConfigurationError

WORDS = ["one", "two", "three", "four", "five", "six", "seven"]
SEVEN_SENTENCES = " ".join(f"Sentence {word} ends here." for word in WORDS)


def doc(
    text: str, *, title: str = "notes", doc_id: str = "d", kind: str = "document"
) -> SourceDocument:
    return SourceDocument(
        doc_id=doc_id,
        kind="product" if kind == "product" else "document",
        title=title,
        text=text,
        source="notes.txt",
        line=1,
        metadata={"category": "faq"},
    )


def long_text(paragraphs: int = 12, sentences: int = 6) -> str:
    """Paragraphs of numbered sentences of varying length; every sentence is unique."""
    blocks = []
    for p in range(paragraphs):
        blocks.append(
            " ".join(
                f"Paragraph {p} sentence {s} says{' more' * ((p * 7 + s * 3) % 11)}."
                for s in range(sentences)
            )
        )
    return "\n\n".join(blocks)


def sentences_of(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s]


def test_short_document_is_one_chunk_with_its_full_text() -> None:
    source = doc("Returns\n\nReturn within 30 days.", title="Returns", doc_id="faq.md#returns")

    (chunk,) = chunk_document(source, max_chars=1200, overlap_chars=200)

    assert chunk == Chunk(
        chunk_id="faq.md#returns#0",
        doc_id="faq.md#returns",
        index=0,
        title="Returns",
        text="Returns\n\nReturn within 30 days.",
        source="notes.txt",
        kind="document",
        metadata={
            "category": "faq",
            "doc_id": "faq.md#returns",
            "chunk_index": 0,
            "chunk_count": 1,
        },
    )


def test_text_of_exactly_max_chars_is_one_chunk() -> None:
    text = "x" * 50 + " " + "y" * 49

    chunks = chunk_document(doc(text), max_chars=100, overlap_chars=10)

    assert [c.text for c in chunks] == [text]


def test_long_text_splits_on_sentences_with_whole_sentence_overlap() -> None:
    chunks = chunk_document(doc(SEVEN_SENTENCES), max_chars=80, overlap_chars=30)

    assert [c.text for c in chunks] == [
        "Sentence one ends here. Sentence two ends here. Sentence three ends here.",
        "Sentence three ends here. Sentence four ends here. Sentence five ends here.",
        "Sentence five ends here. Sentence six ends here. Sentence seven ends here.",
    ]
    assert [c.chunk_id for c in chunks] == ["d#0", "d#1", "d#2"]
    assert [c.metadata["chunk_count"] for c in chunks] == [3, 3, 3]
    assert [c.metadata["chunk_index"] for c in chunks] == [0, 1, 2]


def test_zero_overlap_gives_disjoint_chunks() -> None:
    chunks = chunk_document(doc(SEVEN_SENTENCES), max_chars=80, overlap_chars=0)

    assert " ".join(c.text for c in chunks) == SEVEN_SENTENCES


@pytest.mark.parametrize(("max_chars", "overlap_chars"), [(200, 0), (300, 80), (500, 200)])
def test_long_document_chunks_respect_size_overlap_and_cover_every_sentence(
    max_chars: int, overlap_chars: int
) -> None:
    text = long_text()
    chunks = chunk_document(doc(text), max_chars=max_chars, overlap_chars=overlap_chars)

    assert len(chunks) > 3
    assert all(0 < len(c.text) <= max_chars for c in chunks)
    for sentence in sentences_of(text):
        assert any(sentence in c.text for c in chunks), sentence
    for chunk in chunks:  # never cut mid-sentence: each chunk is whole sentences
        assert chunk.text[0].isupper()
        assert chunk.text.endswith(".")
    overlaps = 0
    for previous, current in itertools.pairwise(chunks):
        shared = overlap_in(text, previous.text, current.text)
        overlaps += bool(shared)
        assert len(shared) <= overlap_chars
        last_sentence = sentences_of(previous.text)[-1]
        if len(last_sentence) <= overlap_chars:  # whole trailing sentences that fit are repeated
            assert shared.endswith(last_sentence)
            assert current.text.startswith(shared)
        else:
            assert shared == ""
    assert (overlaps > 0) == (overlap_chars > 0)


def overlap_in(text: str, previous: str, current: str) -> str:
    """The stretch of ``text`` that both chunks hold (chunks are contiguous, sentences unique)."""
    previous_end = text.index(previous) + len(previous)
    current_start = text.index(current)
    return text[current_start:previous_end] if current_start < previous_end else ""


def test_chunking_is_deterministic() -> None:
    source = doc(long_text(), doc_id="policy.md#returns")

    first = chunk_document(source, max_chars=250, overlap_chars=60)
    second = chunk_document(source, max_chars=250, overlap_chars=60)

    assert first == second
    assert [c.chunk_id for c in first] == [f"policy.md#returns#{i}" for i in range(len(first))]


def test_chunks_prefer_to_end_at_a_paragraph() -> None:
    first = "First paragraph has a sentence. And a second sentence here."
    second = "Second paragraph opens. It goes on for a while longer than the first one did."
    chunks = chunk_document(doc(f"{first}\n\n{second}"), max_chars=100, overlap_chars=0)

    assert [c.text for c in chunks] == [first, second]


def test_a_heading_starts_a_new_chunk_without_overlap() -> None:
    text = (
        "Intro sentence number one. Intro sentence number two. Intro three.\n"
        "### Exceptions\nSale items cannot be returned. Gift cards neither."
    )
    chunks = chunk_document(doc(text), max_chars=90, overlap_chars=40)

    assert [c.text for c in chunks] == [
        "Intro sentence number one. Intro sentence number two. Intro three.",
        "### Exceptions\nSale items cannot be returned. Gift cards neither.",
    ]


def test_title_line_is_repeated_on_every_chunk_of_a_section() -> None:
    text = "Returns\n\n" + SEVEN_SENTENCES
    chunks = chunk_document(doc(text, title="Returns"), max_chars=90, overlap_chars=0)

    assert len(chunks) > 1
    assert all(c.text.startswith("Returns\n\nSentence ") for c in chunks)
    assert all(len(c.text) <= 90 for c in chunks)
    assert chunks[0].text == text[: len(chunks[0].text)]


def test_no_title_line_when_the_text_does_not_start_with_it() -> None:
    chunks = chunk_document(doc(SEVEN_SENTENCES, title="notes"), max_chars=80, overlap_chars=0)

    assert not any(c.text.startswith("notes") for c in chunks)


def test_long_product_repeats_its_name_and_splits_labelled_lines() -> None:
    lines = "\n".join(f"Feature {n}: value number {n}" for n in range(20))
    text = f"Trail Runner\nSKU: TR-1\n{lines}\n\nA fine boot. Very warm."
    chunks = chunk_document(
        doc(text, title="Trail Runner", kind="product"), max_chars=150, overlap_chars=0
    )

    assert all(c.text.startswith("Trail Runner\n\n") and len(c.text) <= 150 for c in chunks)
    body = "".join(c.text.removeprefix("Trail Runner\n\n") + "\n" for c in chunks)
    for line in text.split("\n")[1:]:
        assert line in body


def test_a_word_longer_than_a_chunk_is_hard_split() -> None:
    word = "".join(chr(ord("a") + n % 26) for n in range(250))
    chunks = chunk_document(doc(f"Short start. {word} Short end."), max_chars=100, overlap_chars=0)

    assert [c.text for c in chunks] == [
        "Short start.",
        word[:100],
        word[100:200],
        word[200:] + " Short end.",
    ]


def test_a_sentence_longer_than_a_chunk_splits_between_words() -> None:
    sentence = " ".join(f"word{n}" for n in range(60)) + "."
    chunks = chunk_document(doc(sentence), max_chars=100, overlap_chars=20)

    assert all(0 < len(c.text) <= 100 for c in chunks)
    assert all(re.fullmatch(r"word\d+( word\d+)*\.?", c.text) for c in chunks)
    assert chunks[-1].text.endswith("word59.")


def test_abbreviations_do_not_end_a_sentence() -> None:
    text = "Use a bag, e.g. the blue one, for returns. Call Dr. Smith first. Then wait."
    chunks = chunk_document(doc(text), max_chars=45, overlap_chars=0)

    assert [c.text for c in chunks] == [
        "Use a bag, e.g. the blue one, for returns.",
        "Call Dr. Smith first. Then wait.",
    ]


def test_whitespace_only_document_has_no_chunks() -> None:
    assert chunk_document(doc("  \n\n "), max_chars=100, overlap_chars=10) == []


def test_chunk_documents_keeps_document_order() -> None:
    docs = [doc("Alpha.", doc_id="a"), doc(SEVEN_SENTENCES, doc_id="b"), doc("Gamma.", doc_id="c")]

    chunks = chunk_documents(docs, max_chars=80, overlap_chars=30)

    assert [c.chunk_id for c in chunks] == ["a#0", "b#0", "b#1", "b#2", "c#0"]


@pytest.mark.parametrize(("max_chars", "overlap_chars"), [(0, 0), (100, -1)])
def test_impossible_sizes_are_a_configuration_error(max_chars: int, overlap_chars: int) -> None:
    with pytest.raises(ConfigurationError):
        chunk_document(doc("text"), max_chars=max_chars, overlap_chars=overlap_chars)


def random_text(rng: random.Random) -> str:
    """Lines of unique tokens (so each chunk is found in exactly one place), some very long."""
    words = ["a", "bb", "return", "Refund.", "e.g.", "policy!", "ok?", "Dr."]
    lines = []
    for n in range(rng.randint(1, 40)):
        kind = rng.random()
        if kind < 0.1:
            lines.append(f"## Heading {n}")
        elif kind < 0.25:
            lines.append("")
        else:
            count = rng.randint(1, 30)
            tokens = [f"{n}_{k}{rng.choice(words)}" for k in range(count)]
            if rng.random() < 0.2:
                tokens.append("".join(rng.choice("abcdefgh") for _ in range(rng.randint(50, 400))))
            lines.append(" ".join(tokens))
    return "\n".join(lines)


@pytest.mark.parametrize("seed", range(40))
def test_random_documents_keep_size_and_lose_no_text(seed: int) -> None:
    rng = random.Random(seed)
    long_title = "".join(rng.choice("abcdefgh") for _ in range(60))
    title = rng.choice(["T", "Returns", long_title])
    text = rng.choice([f"{title}\n\n", ""]) + random_text(rng)
    max_chars, overlap_chars = rng.randint(20, 300), rng.randint(0, 120)

    chunks = chunk_document(
        doc(text, title=title), max_chars=max_chars, overlap_chars=overlap_chars
    )

    assert chunks == chunk_document(
        doc(text, title=title), max_chars=max_chars, overlap_chars=overlap_chars
    )
    assert all(0 < len(c.text) <= max_chars and c.text == c.text.strip() for c in chunks)
    header = f"{title}\n\n"
    repeats_title = (
        len(chunks) > 1 and text.startswith(f"{title}\n") and len(header) <= max_chars // 4
    )
    assert all(c.text.startswith(header) for c in chunks) or not repeats_title
    covered = len(title) if repeats_title else 0
    for chunk in chunks:  # each continues the text where the previous stopped, or overlaps it
        body = chunk.text.removeprefix(header) if repeats_title else chunk.text
        start = text.find(body, max(0, covered - overlap_chars))
        while start >= 0 and start + len(body) <= covered:  # every chunk adds new text
            start = text.find(body, start + 1)
        assert start >= 0, (body, text)
        assert text[covered:start].strip() == ""  # no gap
        assert covered - start <= overlap_chars  # overlap within bounds
        covered = max(covered, start + len(body))
    assert text[covered:].strip() == ""
