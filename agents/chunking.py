"""Split extracted text into overlapping, sentence-aligned chunks sized in words.

Chunks are the unit that gets embedded and retrieved, so they should hold whole sentences (a
sentence cut in half embeds poorly) and stay under the embedding model's input budget (counted
here in whitespace-separated words, a cheap and tokenizer-independent proxy). Neighbouring chunks
share a few trailing sentences so a fact that straddles a boundary is still retrievable.

Chunks are described by character offsets into the source text, and ``text[start:end]`` is the
chunk text exactly, so a retrieved chunk can be highlighted in the original document. The split
is a pure function of its inputs: re-processing the same document yields the same chunk ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"\S+")
_SENTENCE_END = (".", "!", "?")


@dataclass(frozen=True)
class Chunk:
    """One chunk: ``text == source[start:end]``; ``index`` counts chunks from 0."""

    index: int
    text: str
    start: int
    end: int


# A unit is a half-open range [first, stop) of word indices: a sentence, or a max_words-sized
# piece of a sentence too long to fit in one chunk.
_Unit = tuple[int, int]


def chunk_text(text: str, *, max_words: int, overlap_words: int) -> list[Chunk]:
    """Pack whole sentences into chunks of at most ``max_words`` words.

    Sentences end at paragraph breaks (a blank line) and after ``.``, ``!`` or ``?`` followed by
    whitespace. A sentence longer than ``max_words`` is split into pieces of ``max_words`` words.
    Each chunk after the first starts with as many whole trailing sentences of the previous chunk
    as fit in ``overlap_words`` (and still leave room for the next sentence); if even the last one
    does not fit, the chunks do not overlap. Text without words gives no chunks.
    """
    if max_words < 1:
        raise ValueError(f"max_words must be at least 1, got {max_words}")
    if not 0 <= overlap_words < max_words:
        raise ValueError(
            f"overlap_words must be at least 0 and less than max_words={max_words}, got {overlap_words}"
        )
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    units = _split_long(_sentences(text, words), max_words)
    chunks: list[Chunk] = []
    for index, (first, stop) in enumerate(_pack(units, max_words, overlap_words)):
        start, end = words[first][0], words[stop - 1][1]
        chunks.append(Chunk(index=index, text=text[start:end], start=start, end=end))
    return chunks


def _sentences(text: str, words: list[tuple[int, int]]) -> list[_Unit]:
    """Group word indices into sentences."""
    units: list[_Unit] = []
    first = 0
    for i in range(len(words) - 1):
        end, next_start = words[i][1], words[i + 1][0]
        ends_sentence = text[end - 1] in _SENTENCE_END
        # The gap between two words is all whitespace, so two newlines in it mean a blank line.
        paragraph_break = text.count("\n", end, next_start) >= 2
        if ends_sentence or paragraph_break:
            units.append((first, i + 1))
            first = i + 1
    if words:
        units.append((first, len(words)))
    return units


def _split_long(units: list[_Unit], max_words: int) -> list[_Unit]:
    out: list[_Unit] = []
    for first, stop in units:
        out.extend((lo, min(lo + max_words, stop)) for lo in range(first, stop, max_words))
    return out


def _pack(units: list[_Unit], max_words: int, overlap_words: int) -> list[_Unit]:
    """Greedily pack consecutive units into word ranges of at most ``max_words`` words."""
    chunks: list[_Unit] = []
    current: list[_Unit] = []
    for unit in units:
        size = unit[1] - unit[0]
        if current and current[-1][1] - current[0][0] + size > max_words:
            chunks.append((current[0][0], current[-1][1]))
            current = _overlap_tail(current, min(overlap_words, max_words - size))
        current.append(unit)
    if current:
        chunks.append((current[0][0], current[-1][1]))
    return chunks


def _overlap_tail(units: list[_Unit], budget: int) -> list[_Unit]:
    """The longest run of trailing units with at most ``budget`` words in total."""
    taken = 0
    count = 0
    for first, stop in reversed(units):
        if taken + (stop - first) > budget:
            break
        taken += stop - first
        count += 1
    return units[len(units) - count :]
