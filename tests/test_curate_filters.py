"""Text normalization, exact and line dedup, and the heuristic filters, each on documents built to fail one rule."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from minillama.curate.exact import ExactDedup
from minillama.curate.filters import PROSE_FILTERS, FilterConfig, document_stats, failed_filter
from minillama.curate.lines import count_lines, remove_repeated_lines
from minillama.curate.text import ngram_hashes, normalize, text_hash, word_hashes, words
from minillama.data import load_text


@pytest.fixture(scope="module")
def prose() -> str:
    """A passage of Shakespeare that passes every prose filter."""
    return load_text("tinyshakespeare")[:2500]


def test_normalize_and_words():
    assert normalize("Hello,  WORLD!\n") == "hello world"
    assert words("It's 3 pm") == ["it", "s", "3", "pm"]
    assert normalize("ﬁne Café") == "fine café"  # NFKC folds the ligature


def test_hashes_do_not_depend_on_the_process():
    """Python's own hash() of a str changes with PYTHONHASHSEED; ours must not."""
    code = "from minillama.curate.text import *; print(text_hash('a b').hex(), word_hashes(['a', 'b']).tolist())"
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed, "PYTHONPATH": ":".join(sys.path)}).stdout
            for seed in ("1", "2")}
    assert len(runs) == 1


def test_ngram_hashes_depend_on_order():
    hashes = word_hashes(["a", "b", "a", "b"])
    bigrams = ngram_hashes(hashes, 2)
    assert len(bigrams) == 3 and bigrams[0] == bigrams[2] and bigrams[0] != bigrams[1]  # ab, ba, ab


def test_exact_dedup_ignores_case_spacing_and_punctuation():
    dedup = ExactDedup()
    assert not dedup.is_duplicate("To be, or not to be.")
    assert dedup.is_duplicate("to  BE or not to be!")
    assert not dedup.is_duplicate("to be or not to see")
    assert text_hash("a b") != text_hash("ab")


def test_line_dedup_removes_lines_shared_by_more_than_max_repeats_documents():
    footer = "Copyright 2024 Example Media Group. All rights reserved."
    documents = [f"Story number {i} is about a different thing.\n{footer}\nThe end." for i in range(8)]
    counts = count_lines(documents)
    assert counts[normalize(footer)] == 8 and normalize("The end.") not in counts  # shorter than 20 characters
    text, removed = remove_repeated_lines(documents[0], counts, max_repeats=6)
    assert removed == 1 and text == "Story number 0 is about a different thing.\nThe end."
    text, removed = remove_repeated_lines(documents[0], counts, max_repeats=8)
    assert removed == 0 and footer in text
    # a line repeated inside one document counts once
    assert count_lines([f"{footer}\n{footer}"])[normalize(footer)] == 1


def test_clean_prose_passes(prose):
    assert failed_filter(prose) is None


def _faulty(name: str, prose: str) -> str:
    """Clean prose with one fault added, the one filter ``name`` looks for."""
    words_ = prose.split()
    return {
        "word_count": "The cat and the dog sat with me.",
        "mean_word_length": " ".join(w[:2] for w in words_),
        "symbol_ratio": " ".join(f"#{w}" if i % 5 == 0 else w for i, w in enumerate(words_)),
        "alpha_words": " ".join(f"{w} {i}" for i, w in enumerate(words_)),
        "stop_words": " ".join(w for w in words_ if w.lower().strip(",.;:!?") not in
                               {"the", "be", "to", "of", "and", "that", "have", "with"}),
        "bullet_lines": "\n".join(f"* {line}" for line in prose.splitlines() if line.strip()),
        "ellipsis_lines": "\n".join(" ".join(words_[i : i + 20]) + "..." for i in range(0, len(words_), 20)),
        "duplicate_lines": prose + "\n" + "\n".join(line for line in prose.splitlines() if line.strip()),
        "duplicate_ngram": prose + "\n\n" + " ".join(words_),
        "lorem_ipsum": prose + "\n\nLorem ipsum dolor sit amet.",
        "curly_brace": prose + "\n\nSee {the note}.",
    }[name]


@pytest.mark.parametrize("name", ["word_count", "mean_word_length", "symbol_ratio", "alpha_words", "stop_words",
                                  "bullet_lines", "ellipsis_lines", "duplicate_lines", "duplicate_ngram",
                                  "lorem_ipsum", "curly_brace"])
def test_each_filter_drops_what_it_targets(name, prose):
    text = _faulty(name, prose)
    assert failed_filter(text) == name, document_stats(text)


def test_duplicate_ngram_fraction_by_hand():
    # words: x1 a b c d e x2 a b c d e -> the 5-gram "a b c d e" repeats and covers 10 of 12 words
    text = "xx aa bb cc dd ee yy aa bb cc dd ee"
    stats = document_stats(text)
    assert stats["duplicate_5gram"] == pytest.approx(20 / 24)  # 10 words of 2 characters out of 24 characters
    assert stats["duplicate_6gram"] == 0.0
    assert stats["top_2gram"] == pytest.approx(2 * 4 / 24)  # "aa bb" (4 characters) twice
    assert stats["duplicate_paragraphs"] == 0.0


def test_code_filters():
    source = "def f(x):\n    return x + 1\n"
    assert failed_filter(source, "code") is None
    assert failed_filter("x = '" + "a" * 2000 + "'\n", "code") == "code_line_length"
    assert failed_filter("\n".join(["+-*/ = () [] ;; ::"] * 20), "code") == "code_alphanumeric"
    with pytest.raises(ValueError, match="domain"):
        failed_filter(source, "math")


def test_thresholds_are_configurable(prose):
    assert failed_filter(prose, config=FilterConfig(min_words=10_000)) == "word_count"
    assert set(PROSE_FILTERS) >= {"word_count", "top_ngram", "duplicate_ngram", "lorem_ipsum", "curly_brace"}


def test_filters_on_the_dirty_corpus_drop_noise_far_more_than_originals():
    from minillama.curate.dirty import build_dirty_corpus

    documents = build_dirty_corpus()
    failed = Counter((d.kind, failed_filter(d.text, d.domain) is not None) for d in documents)
    assert failed["gibberish", True] == failed["gibberish", True] + failed["gibberish", False]  # all of it
    assert failed["lorem", True] > 0.9 * (failed["lorem", True] + failed["lorem", False])
    originals = np.array([failed["original", True], failed["original", False]])
    assert originals[0] / originals.sum() < 0.15  # the price of the rules: a few good documents go too
