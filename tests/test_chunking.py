"""agents.chunking: sentence packing, overlap, offsets, and properties over generated text."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.chunking import Chunk, chunk_text


def texts(chunks: list[Chunk]) -> list[str]:
    return [c.text for c in chunks]


SENTENCES = "One two three. Four five. Six seven eight. Nine ten."


def test_sentences_are_packed_whole_and_chunks_overlap_by_whole_sentences() -> None:
    chunks = chunk_text(SENTENCES, max_words=5, overlap_words=3)
    assert texts(chunks) == [
        "One two three. Four five.",
        "Four five. Six seven eight.",
        "Six seven eight. Nine ten.",
    ]
    assert [c.index for c in chunks] == [0, 1, 2]


def test_trailing_sentence_longer_than_overlap_words_is_not_repeated() -> None:
    # "Six seven eight." has 3 words > overlap_words=2, so the last chunk starts fresh.
    assert texts(chunk_text(SENTENCES, max_words=5, overlap_words=2)) == [
        "One two three. Four five.",
        "Four five. Six seven eight.",
        "Nine ten.",
    ]


def test_no_overlap_when_the_trailing_sentence_is_longer_than_overlap_words() -> None:
    text = "One two three. Four five six. Seven eight nine."
    assert texts(chunk_text(text, max_words=6, overlap_words=2)) == [
        "One two three. Four five six.",
        "Seven eight nine.",
    ]


def test_overlap_zero_gives_disjoint_chunks() -> None:
    text = "A b. C d. E f. G h."
    assert texts(chunk_text(text, max_words=4, overlap_words=0)) == ["A b. C d.", "E f. G h."]


def test_overlap_is_dropped_when_it_would_push_the_next_chunk_over_the_limit() -> None:
    # "C d e f." (4 words) plus the 1-word overlap "B." would make 5 > max_words=4.
    text = "A. B. C d e f."
    assert texts(chunk_text(text, max_words=4, overlap_words=2)) == ["A. B.", "C d e f."]


def test_long_sentence_is_split_by_words() -> None:
    text = "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11. Short one."
    chunks = chunk_text(text, max_words=4, overlap_words=1)
    # Pieces of 4 words are too long to be a 1-word overlap, and so is the 3-word tail piece.
    assert texts(chunks) == ["w1 w2 w3 w4", "w5 w6 w7 w8", "w9 w10 w11.", "Short one."]


def test_paragraph_break_ends_a_sentence_and_offsets_point_into_the_source() -> None:
    text = "  Heading without period\n\nBody text here!  Last question?\n"
    chunks = chunk_text(text, max_words=3, overlap_words=0)
    assert texts(chunks) == ["Heading without period", "Body text here!", "Last question?"]
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
    assert chunks[0].start == 2
    assert chunks[-1].end == len(text) - 1


def test_single_newline_does_not_end_a_sentence() -> None:
    text = "wrapped line\ncontinues here. Next."
    assert texts(chunk_text(text, max_words=4, overlap_words=0)) == ["wrapped line\ncontinues here.", "Next."]


def test_chunk_can_span_paragraphs_and_keeps_the_break() -> None:
    text = "Para one.\n\nPara two."
    assert texts(chunk_text(text, max_words=10, overlap_words=2)) == ["Para one.\n\nPara two."]


@pytest.mark.parametrize("text", ["", "   \n\n\t "])
def test_text_without_words_gives_no_chunks(text: str) -> None:
    assert chunk_text(text, max_words=5, overlap_words=1) == []


@pytest.mark.parametrize(("max_words", "overlap_words"), [(5, 5), (5, 6), (0, 0), (3, -1)])
def test_invalid_sizes_are_rejected(max_words: int, overlap_words: int) -> None:
    with pytest.raises(ValueError):
        chunk_text("some text", max_words=max_words, overlap_words=overlap_words)


# --- properties -------------------------------------------------------------------------------------

_TOKENS = st.sampled_from(["alpha", "b", "c.", "d!", "e?", "f,", "...", "g.h", "é."])
_GAPS = st.sampled_from([" ", "  ", "\n", "\n\n", " \n \n ", "\t", "\r\n"])


@st.composite
def documents(draw: st.DrawFn) -> str:
    tokens = draw(st.lists(_TOKENS, max_size=80))
    gaps = draw(st.lists(_GAPS, min_size=len(tokens) + 1, max_size=len(tokens) + 1))
    return gaps[0] + "".join(token + gap for token, gap in zip(tokens, gaps[1:], strict=True))


@st.composite
def sizes(draw: st.DrawFn) -> tuple[int, int]:
    max_words = draw(st.integers(min_value=1, max_value=25))
    return max_words, draw(st.integers(min_value=0, max_value=max_words - 1))


@settings(max_examples=300, database=None, deadline=None)
@given(text=st.one_of(documents(), st.text(max_size=300)), size=sizes())
def test_chunk_properties(text: str, size: tuple[int, int]) -> None:
    max_words, overlap_words = size
    chunks = chunk_text(text, max_words=max_words, overlap_words=overlap_words)
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]

    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text  # offsets reproduce the text
        assert 1 <= len(chunk.text.split()) <= max_words
        assert chunk.text == chunk.text.strip()
    # Every word of the source is in some chunk, and chunks move forward.
    covered = {span for span in words if any(c.start <= span[0] and span[1] <= c.end for c in chunks)}
    assert covered == set(words)
    assert all(a.start < b.start and a.end < b.end for a, b in pairwise(chunks))
    # Deterministic.
    assert chunk_text(text, max_words=max_words, overlap_words=overlap_words) == chunks
