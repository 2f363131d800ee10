"""Heuristic quality filters with documented thresholds: Gopher's (Rae et al. 2021, appendix A) and C4's (Raffel et al.
2020) rules for prose, and StarCoder-style rules (Li et al. 2023) for code.

:func:`document_stats` measures a document once; :func:`failed_filter` returns the name of the first filter, in the
order of ``PROSE_FILTERS`` (or ``CODE_FILTERS``), that the document fails, or ``None`` if it passes them all, so a
pipeline can count how many documents each filter drops. Each threshold is a field of :class:`FilterConfig` with its
source; the repetition filters measure characters covered by repeated word n-grams, which catches keyword stuffing
that word counts miss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from minillama.curate.text import ngram_hashes, word_hashes, words

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})  # Gopher's list
BULLETS = ("*", "-", "•", "‣", "●")


@dataclass(frozen=True)
class FilterConfig:
    """Thresholds; a document outside any of them is dropped."""

    min_words: int = 50  # Gopher: fewer words is not a document
    max_words: int = 100_000  # Gopher
    min_mean_word_length: float = 3.0  # Gopher: shorter is mostly symbols or tables
    max_mean_word_length: float = 10.0  # Gopher: longer is mostly URLs, hashes, base64
    max_symbol_ratio: float = 0.1  # Gopher: '#' and ellipses per word
    min_alpha_words: float = 0.8  # Gopher: share of words with a letter in them
    min_stop_words: int = 2  # Gopher: at least 2 of the, be, to, of, and, that, have, with
    max_bullet_lines: float = 0.9  # Gopher: share of lines starting with a bullet
    max_ellipsis_lines: float = 0.3  # Gopher: share of lines ending with an ellipsis
    max_duplicate_lines: float = 0.3  # Gopher: share of lines that repeat an earlier line
    max_duplicate_paragraphs: float = 0.3  # Gopher: share of paragraphs that repeat an earlier one
    # Gopher: characters in the most frequent n-gram (times its count) / all word characters, n = 2, 3, 4
    max_top_ngram: dict[int, float] = field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    # Gopher: characters covered by n-grams that occur more than once / all word characters, n = 5..10
    max_duplicate_ngram: dict[int, float] = field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})
    max_code_line_length: int = 1000  # StarCoder: longer lines are minified or data
    max_code_mean_line_length: float = 100.0  # StarCoder
    min_code_alphanumeric: float = 0.25  # StarCoder: share of alphanumeric characters


def _top_ngram_fraction(hashes: np.ndarray, lengths: np.ndarray, n: int) -> float:
    """Characters of the most frequent word n-gram (the longest, among ties) times its count, over all characters."""
    if len(hashes) < n:
        return 0.0
    _, first, counts = np.unique(ngram_hashes(hashes, n), return_index=True, return_counts=True)
    top = counts.max()
    if top < 2:
        return 0.0
    chars = np.convolve(lengths, np.ones(n, dtype=np.int64), "valid")  # characters of each n-gram occurrence
    return float(top * chars[first[counts == top]].max() / lengths.sum())


def _duplicate_ngram_fraction(hashes: np.ndarray, lengths: np.ndarray, n: int) -> float:
    """Characters of the words covered by any n-gram occurring more than once, over all word characters."""
    if len(hashes) < n:
        return 0.0
    grams = ngram_hashes(hashes, n)
    _, inverse, counts = np.unique(grams, return_inverse=True, return_counts=True)
    starts = np.flatnonzero(counts[inverse] > 1)  # n-grams that repeat: cover words start .. start + n - 1
    cover = np.zeros(len(hashes) + 1, dtype=np.int64)
    np.add.at(cover, starts, 1)
    np.add.at(cover, starts + n, -1)
    covered = np.cumsum(cover[:-1]) > 0
    return float(lengths[covered].sum() / lengths.sum())


def _repeated_fraction(items: list[str]) -> float:
    """Share of ``items`` equal to an earlier one: ``["a", "b", "a", "a"]`` -> 0.5."""
    return (len(items) - len(set(items))) / len(items) if items else 0.0


def document_stats(text: str, config: FilterConfig = FilterConfig()) -> dict[str, float]:
    """Every quantity the prose filters test, measured once."""
    tokens = words(text)
    raw = text.split()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    hashes = word_hashes(tokens)
    lengths = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
    n_raw = max(len(raw), 1)
    stats = {
        "words": len(raw),
        "mean_word_length": float(np.mean([len(w) for w in raw])) if raw else 0.0,
        "symbol_ratio": (text.count("#") + text.count("...") + text.count("…")) / n_raw,
        "alpha_words": sum(any(c.isalpha() for c in w) for w in raw) / n_raw,
        "stop_words": len(STOP_WORDS & set(tokens)),
        "bullet_lines": sum(line.startswith(BULLETS) for line in lines) / max(len(lines), 1),
        "ellipsis_lines": sum(line.endswith(("...", "…")) for line in lines) / max(len(lines), 1),
        "duplicate_lines": _repeated_fraction(lines),
        "duplicate_paragraphs": _repeated_fraction(paragraphs),
        "lorem_ipsum": float("lorem ipsum" in text.lower()),
        "curly_brace": float("{" in text),
    }
    for n in config.max_top_ngram:
        stats[f"top_{n}gram"] = _top_ngram_fraction(hashes, lengths, n) if len(tokens) else 0.0
    for n in config.max_duplicate_ngram:
        stats[f"duplicate_{n}gram"] = _duplicate_ngram_fraction(hashes, lengths, n) if len(tokens) else 0.0
    return stats


Check = Callable[[dict[str, float], FilterConfig], bool]  # True: the document fails


PROSE_FILTERS: dict[str, Check] = {
    "word_count": lambda s, c: not c.min_words <= s["words"] <= c.max_words,
    "mean_word_length": lambda s, c: not c.min_mean_word_length <= s["mean_word_length"] <= c.max_mean_word_length,
    "symbol_ratio": lambda s, c: s["symbol_ratio"] > c.max_symbol_ratio,
    "alpha_words": lambda s, c: s["alpha_words"] < c.min_alpha_words,
    "stop_words": lambda s, c: s["stop_words"] < c.min_stop_words,
    "bullet_lines": lambda s, c: s["bullet_lines"] > c.max_bullet_lines,
    "ellipsis_lines": lambda s, c: s["ellipsis_lines"] > c.max_ellipsis_lines,
    "duplicate_lines": lambda s, c: s["duplicate_lines"] > c.max_duplicate_lines,
    "duplicate_paragraphs": lambda s, c: s["duplicate_paragraphs"] > c.max_duplicate_paragraphs,
    "top_ngram": lambda s, c: any(s[f"top_{n}gram"] > t for n, t in c.max_top_ngram.items()),
    "duplicate_ngram": lambda s, c: any(s[f"duplicate_{n}gram"] > t for n, t in c.max_duplicate_ngram.items()),
    "lorem_ipsum": lambda s, c: s["lorem_ipsum"] > 0,  # C4: placeholder text
    "curly_brace": lambda s, c: s["curly_brace"] > 0,  # C4: code in what should be prose
}


def code_stats(text: str) -> dict[str, float]:
    """What the code filters test: the longest and the mean line length, the share of alphanumeric characters."""
    lengths = [len(line) for line in text.splitlines()] or [0]
    return {
        "max_line_length": max(lengths),
        "mean_line_length": sum(lengths) / len(lengths),
        "alphanumeric": sum(c.isalnum() for c in text) / max(len(text), 1),
    }


CODE_FILTERS: dict[str, Check] = {
    "code_line_length": lambda s, c: s["max_line_length"] > c.max_code_line_length,
    "code_mean_line_length": lambda s, c: s["mean_line_length"] > c.max_code_mean_line_length,
    "code_alphanumeric": lambda s, c: s["alphanumeric"] < c.min_code_alphanumeric,
}


def failed_filter(text: str, domain: str = "prose", config: FilterConfig = FilterConfig()) -> str | None:
    """The name of the first filter ``text`` fails (``None`` if it passes all); ``domain`` is "prose" or "code"."""
    if domain == "code":
        stats, checks = code_stats(text), CODE_FILTERS
    elif domain == "prose":
        stats, checks = document_stats(text, config), PROSE_FILTERS
    else:
        raise ValueError(f"domain must be 'prose' or 'code', got {domain!r}")
    return next((name for name, fails in checks.items() if fails(stats, config)), None)
