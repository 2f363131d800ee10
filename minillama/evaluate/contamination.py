"""Contamination: does an evaluation item appear in the training data? 13-gram overlap, reported per item.

GPT-3 (Brown et al. 2020, appendix C) flags an item when its text shares a 13-gram of words with the training
corpus; the Llama 2 and 3 reports score items by n-gram overlap with the pre-training data in the same spirit.
Words are lower-cased runs of letters and digits, so punctuation and line breaks do not hide a copy. An item's
score is the share of its n-grams found in the corpus; items with any overlap deserve a look, and a benchmark
reported on its "clean" subset tells how much the contamination was worth.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lower-cased words: ``"Speak, speak."`` -> ``["speak", "speak"]``."""
    return WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int = 13) -> set[tuple[str, ...]]:
    """Every run of ``n`` consecutive words: ``ngrams("a b c".split(), 2) == {("a", "b"), ("b", "c")}``."""
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def corpus_ngrams(texts: str | Iterable[str], n: int = 13) -> set[tuple[str, ...]]:
    """The set of ``n``-grams of a training corpus (a text or documents; n-grams do not cross documents)."""
    found: set[tuple[str, ...]] = set()
    for text in [texts] if isinstance(texts, str) else texts:
        found |= ngrams(words(text), n)
    return found


def item_overlap(text: str, index: set[tuple[str, ...]], n: int = 13) -> dict[str, float | int]:
    """How much of ``text`` (an item's context and answer) the corpus contains: n-grams, how many hit, the share.

    An item shorter than ``n`` words has no n-gram and cannot be flagged (``ngrams == 0``): report it as such.
    """
    grams = ngrams(words(text), n)
    hits = len(grams & index)
    return {"ngrams": len(grams), "hits": hits, "overlap": hits / len(grams) if grams else 0.0}
