"""13-gram contamination: by hand, and on tinyshakespeare: a leaked training passage is flagged, held-out items
of the generated task are not."""

from __future__ import annotations

from minillama.evaluate.contamination import corpus_ngrams, item_overlap, ngrams, words
from minillama.evaluate.generated import HELD_OUT_FRACTION, shakespeare_next_line


def test_words_and_ngrams_by_hand():
    assert words("Speak, speak.\nFirst Citizen:") == ["speak", "speak", "first", "citizen"]
    assert ngrams("a b c".split(), 2) == {("a", "b"), ("b", "c")}
    assert ngrams("a b".split(), 3) == set()


def test_overlap_per_item():
    corpus = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    index = corpus_ngrams(corpus)
    assert len(index) == 2
    copied = item_overlap("One, two; three four five six seven eight nine ten eleven twelve thirteen!", index)
    assert copied == {"ngrams": 1, "hits": 1, "overlap": 1.0}
    half = item_overlap("two three four five six seven eight nine ten eleven twelve thirteen fourteen zebra", index)
    assert half == {"ngrams": 2, "hits": 1, "overlap": 0.5}
    assert item_overlap("too short to have a 13-gram", index)["ngrams"] == 0


def test_documents_do_not_join_into_ngrams():
    left = " ".join(f"a{i}" for i in range(7))
    right = " ".join(f"b{i}" for i in range(7))
    assert corpus_ngrams([left, right]) == set()
    assert len(corpus_ngrams(left + " " + right)) == 2


def test_leaked_item_flagged_held_out_items_clean():
    from minillama.data.corpora import load_text

    text = load_text("tinyshakespeare")
    split = int(len(text) * (1 - HELD_OUT_FRACTION))
    index = corpus_ngrams(text[:split])
    task = shakespeare_next_line(n_items=40)
    overlaps = [item_overlap(item.context + item.choices[item.gold], index)["hits"] for item in task.items]
    assert sum(hit > 0 for hit in overlaps) <= 1  # the held-out tail: at most a stray repeated phrase
    leaked = "\n".join(text[:split].split("\n")[40:46])  # six whole lines of the training text
    assert item_overlap(leaked, index)["overlap"] == 1.0
