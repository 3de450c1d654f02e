"""Identifiers in any spelling: normalisation at ingest and at query time, and exact matches."""

from __future__ import annotations

import pytest

from rag_service.retrieval.identifiers import (
    IdentifierTable,
    identifiers_in,
    identifiers_in_query,
    normalise,
    record_identifiers,
)


@pytest.mark.parametrize("spelling", ["K-7416-F", "k-7416-f", "K 7416 F", "K7416F", "k.7416/f"])
def test_every_spelling_normalises_alike(spelling: str) -> None:
    assert normalise(spelling) == "K7416F"


def test_identifiers_are_found_in_passage_text() -> None:
    text = "SKU: BOT-00012. Sizes EU 41, EU 42. Price 239.99 EUR. Waterproof to 3000 mm. XR200."

    assert identifiers_in(text) == {"BOT00012", "XR200"}  # not sizes, prices or plain numbers


def test_a_product_is_named_by_its_sku_document_id() -> None:
    found = record_identifiers("K-7416-F", "Trail boot", "A boot.")
    assert found == {"K7416F"}
    assert record_identifiers("policies/returns.md#30-day-return-period", "Returns", "") == set()


@pytest.mark.parametrize(
    "question",
    [
        "is k-7416-f in stock?",
        "Is K 7416 F in stock?",
        "K7416F price",
        "what about the k 7416-f",
    ],
)
def test_questions_name_the_product_in_any_spelling(question: str) -> None:
    table = IdentifierTable.build([("K-7416-F", {"K7416F"}), ("K-7416-G", {"K7416G"})])

    assert table.exact_documents(question) == ["K-7416-F"]


def test_a_part_of_a_longer_match_does_not_count_on_its_own() -> None:
    # "K 7416" alone would name another product; inside "K 7416 F" it does not.
    table = IdentifierTable.build([("K-7416-F", {"K7416F"}), ("K-7416", {"K7416"})])

    assert table.exact_documents("is K 7416 F in stock") == ["K-7416-F"]
    assert table.exact_documents("is K 7416 in stock") == ["K-7416"]


def test_two_products_named_in_one_question_come_in_order_of_length_then_name() -> None:
    table = IdentifierTable.build([("BOT-00012", {"BOT00012"}), ("TNT-00003", {"TNT00003"})])

    assert table.exact_documents("compare bot 00012 and TNT-00003") == ["BOT-00012", "TNT-00003"]


def test_an_identifier_shared_by_many_documents_is_not_exact() -> None:
    table = IdentifierTable.build([(f"tent-{i}", {"3SEASON"}) for i in range(4)])

    assert table.exact_documents("a 3-season tent") == []


def test_words_and_sizes_are_not_identifier_candidates() -> None:
    spans = [c.normalised for c in identifiers_in_query("size EU 42 in the blue one")]

    assert "EU42" in spans  # a candidate; only the catalog's table makes it a match
    assert (
        IdentifierTable.build([("BOT-00012", {"BOT00012"})]).exact_documents(
            "size EU 42 in the blue one"
        )
        == []
    )
