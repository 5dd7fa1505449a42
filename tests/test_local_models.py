"""The local tier's parts on real inputs: embedder, entity extraction, summaries, topics, pricing."""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from agents.priority import priority_for
from gateway.local.embedder import Embedder
from gateway.local.extraction import EntityExtractor, pattern_entities
from gateway.local.summarize import summarize
from gateway.local.topics import TopicClassifier
from gateway.pricing import load_prices


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="module")
def extractor() -> EntityExtractor:
    return EntityExtractor()


def test_embeddings_are_unit_length_and_order_preserving(embedder: Embedder) -> None:
    texts = ["my card was stolen", "a much longer text about exchange rates in foreign currencies " * 5, "hi"]
    batch = embedder.embed(texts)
    assert batch.shape == (3, 384)
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-4)
    for i, text in enumerate(texts):  # sorting by length inside embed() must not permute rows
        assert float(batch[i] @ embedder.embed([text])[0]) > 0.999


def test_similar_sentences_are_closer_than_unrelated_ones(embedder: Embedder) -> None:
    a, b, c = embedder.embed(["I lost my card", "my card is missing", "what is the exchange rate for euros"])
    assert float(a @ b) > float(a @ c) + 0.2


def test_token_counts_are_not_truncated(embedder: Embedder) -> None:
    long_text = "word " * 1000
    assert embedder.count_tokens([long_text])[0] > 1000


def test_patterns_find_what_must_never_be_missed() -> None:
    text = (
        "Charged $45.20 twice on 2026-11-02, card ending in 4242; refund to DE89 3704 0044 0532 0130 00 "
        "or account number 12345678. Mail bob@example.com. Card 4111 1111 1111 1111, not 4111 1111 1111 1112."
    )
    found = {(e.label, e.text) for e in pattern_entities(text)}
    assert ("AMOUNT", "$45.20") in found
    assert ("DATE", "2026-11-02") in found
    assert ("CARD_REF", "card ending in 4242") in found
    assert ("IBAN", "DE89 3704 0044 0532 0130 00") in found
    assert ("ACCOUNT_REF", "account number 12345678") in found
    assert ("EMAIL", "bob@example.com") in found
    assert ("CARD_REF", "4111 1111 1111 1111") in found
    assert all(t != "4111 1111 1111 1112" for _, t in found)  # fails the Luhn check


def test_model_entities_merge_without_overlapping_patterns(extractor: EntityExtractor) -> None:
    [entities] = extractor.extract_many(["Amazon charged me $30 in London on Monday, card ending in 1234."])
    labels = {e.label for e in entities}
    assert {"ORG", "GPE", "AMOUNT", "CARD_REF"} <= labels
    spans = sorted((e.start, e.end) for e in entities)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))


def test_summary_is_extractive_and_bounded() -> None:
    text = (
        Path(__file__).resolve().parent.parent / "infra/datasets/sotu/texts/2010_barack_obama_d.txt"
    ).read_text()
    summary = summarize(text, max_sentences=3, max_chars=600)
    assert 0 < len(summary) <= 600
    first = summary.split(". ")[0].rstrip("…")
    assert first[:60] in text  # every sentence comes from the source


def test_short_text_summary_is_the_text_itself() -> None:
    assert summarize("My card has not arrived yet.", max_sentences=1) == "My card has not arrived yet."


def test_topics_rank_a_health_text_under_health_care(embedder: Embedder) -> None:
    topics = TopicClassifier(embedder)
    vectors = embedder.embed(
        [
            "Millions of families cannot afford health insurance and hospital bills.",
            "We will lower the cost of prescription drugs for patients.",
        ]
    )
    ranked = topics.scores(vectors)
    assert ranked[0][0] == "health_care"
    assert abs(sum(p for _, p in ranked)) <= 1.0 + 1e-6


@pytest.mark.parametrize(
    ("intent", "text", "expected"),
    [
        ("lost_or_stolen_card", "I lost my card", "urgent"),
        ("exchange_rate", "what is the rate?", "low"),
        ("exchange_rate", "URGENT what is the rate?", "normal"),
        ("transaction_charged_twice", "charged twice", "high"),
        ("some_new_intent", "hello", "normal"),
    ],
)
def test_priority_rules(intent: str, text: str, expected: str) -> None:
    assert priority_for(intent, text) == expected


def test_price_table_prices_local_models_at_zero_and_unknown_as_none() -> None:
    prices = load_prices()
    assert prices.cost("local/all-MiniLM-L6-v2-int8", 1000, 0) == Decimal(0)
    assert prices.cost("openai/unknown-model", 1000, 10) is None


def test_price_math_is_exact_decimal(tmp_path: Path) -> None:
    table = tmp_path / "prices.toml"
    table.write_text('version = "t1"\n[models."p/m"]\ninput = "2.50"\noutput = "10.00"\n')
    prices = load_prices(table)
    # 1,234 in × $2.50/M + 567 out × $10/M = 0.003085 + 0.00567
    assert prices.cost("p/m", 1234, 567) == Decimal("0.008755")
