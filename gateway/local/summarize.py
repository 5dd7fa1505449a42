"""Extractive summaries: the highest-scoring sentences of the source, in source order.

Sentences are scored by the frequency of their content words in the whole text (Luhn's idea),
normalised by length so long sentences do not win by size. Extractive output cannot invent facts
or numbers, which matters more here than fluency.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from spacy.lang.en.stop_words import STOP_WORDS

MODEL_NAME = "extractive-tf"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n{2,}")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
_STOP: frozenset[str] = frozenset(STOP_WORDS)


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def summarize(text: str, *, max_sentences: int = 3, max_chars: int = 600) -> str:
    sentences = split_sentences(text)
    if not sentences:
        return ""
    if len(sentences) <= max_sentences:
        return _clip(" ".join(sentences), max_chars)
    freq = Counter(w for w in (m.lower() for m in _WORD.findall(text)) if w not in _STOP)
    scored = []
    for position, sentence in enumerate(sentences):
        words = [w.lower() for w in _WORD.findall(sentence)]
        content = [w for w in words if w not in _STOP]
        if len(words) < 5:
            continue
        score = sum(freq[w] for w in content) / math.sqrt(len(words))
        scored.append((score, position))
    best = sorted(sorted(scored, reverse=True)[:max_sentences], key=lambda item: item[1])
    chosen = [sentences[pos] for _, pos in best] or sentences[:max_sentences]
    return _clip(" ".join(chosen), max_chars)


def _clip(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1].rsplit(" ", 1)[0]
    return cut + "…"
