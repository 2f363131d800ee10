"""MinHash and LSH banding against ``datasketch`` (an independent implementation) and against the S-curve formula."""

from __future__ import annotations

import random

import numpy as np
import pytest

from minillama.curate.dirty import edit_words
from minillama.curate.lsh import LSHIndex, candidate_pairs, collision_probability, optimal_bands_rows
from minillama.curate.minhash import MinHasher, estimate_jaccard, jaccard
from minillama.curate.text import mix64, shingle_hashes, shingle_strings
from minillama.data import load_text

datasketch = pytest.importorskip("datasketch")
NUM_PERM = 128


@pytest.fixture(scope="module")
def documents() -> list[str]:
    """40 passages of Shakespeare and near copies of them edited at 1% to 40% of their words (J from ~0.1 to ~0.95)."""
    rng = random.Random(0)
    words = load_text("tinyshakespeare").split()
    originals = [" ".join(words[i * 2000 : i * 2000 + 300]) for i in range(20)]
    rates = np.geomspace(0.01, 0.4, 20)
    copies = [edit_words(text, rate, rng, words) for text, rate in zip(originals, rates, strict=True)]
    return originals + copies


def _datasketch_minhash(text: str):
    minhash = datasketch.MinHash(num_perm=NUM_PERM, seed=1)
    minhash.update_batch([s.encode() for s in shingle_strings(text)])
    return minhash


def test_shingle_hashes_are_the_shingle_set(documents):
    for text in documents[:5]:
        assert len(shingle_hashes(text)) == len(shingle_strings(text))  # no collisions, nothing lost
    assert len(shingle_hashes("a b c d", 3)) == 2 and len(shingle_hashes("a b", 5)) == 1


def test_jaccard_estimates_agree_with_datasketch_within_the_estimators_error(documents):
    hasher = MinHasher(NUM_PERM, seed=0)
    ours_errors, theirs_errors = [], []
    for original, copy in zip(documents[:20], documents[20:], strict=True):
        exact = jaccard(shingle_strings(original), shingle_strings(copy))
        ours = estimate_jaccard(hasher.signature(original), hasher.signature(copy))
        theirs = _datasketch_minhash(original).jaccard(_datasketch_minhash(copy))
        sigma = np.sqrt(exact * (1 - exact) / NUM_PERM)  # standard error of both estimators
        assert abs(ours - exact) <= 4 * sigma + 1 / NUM_PERM, (exact, ours)
        assert abs(ours - theirs) <= 4 * np.sqrt(2) * sigma + 1 / NUM_PERM, (exact, ours, theirs)
        ours_errors.append((ours - exact) / max(sigma, 1e-9))
        theirs_errors.append((theirs - exact) / max(sigma, 1e-9))
    # no bias: the mean standardized error of 20 pairs is within 3 standard errors of 0, for both implementations
    assert abs(np.mean(ours_errors)) < 3 / np.sqrt(20) and abs(np.mean(theirs_errors)) < 3 / np.sqrt(20)


def test_same_signatures_give_datasketchs_candidate_pairs(documents):
    """Banding is deterministic: fed datasketch's own signatures, our index must find exactly its candidate pairs."""
    minhashes = [_datasketch_minhash(text) for text in documents]
    for bands, rows in [(25, 5), (16, 8), (32, 4)]:
        lsh = datasketch.MinHashLSH(num_perm=NUM_PERM, params=(bands, rows))
        for key, minhash in enumerate(minhashes):
            lsh.insert(key, minhash)
        theirs = {tuple(sorted((key, other))) for key, m in enumerate(minhashes) for other in lsh.query(m)
                  if other != key}
        ours = candidate_pairs(((key, m.hashvalues) for key, m in enumerate(minhashes)), bands, rows)
        assert ours == theirs
        assert 5 < len(ours) < 20, "the documents must include pairs on both sides of the threshold"


def test_own_signatures_find_the_same_clear_pairs_as_datasketch(documents):
    """With independent hash functions, borderline pairs may differ; pairs far from the threshold may not."""
    hasher = MinHasher(NUM_PERM, seed=0)
    bands, rows = 25, 5  # threshold (1/25)**(1/5) = 0.53
    ours = candidate_pairs(((k, hasher.signature(t)) for k, t in enumerate(documents)), bands, rows)
    lsh = datasketch.MinHashLSH(num_perm=NUM_PERM, params=(bands, rows))
    minhashes = [_datasketch_minhash(text) for text in documents]
    for key, minhash in enumerate(minhashes):
        lsh.insert(key, minhash)
    theirs = {tuple(sorted((k, o))) for k, m in enumerate(minhashes) for o in lsh.query(m) if o != k}
    shingles = [shingle_strings(t) for t in documents]
    for i in range(len(documents)):
        for j in range(i + 1, len(documents)):
            similarity = jaccard(shingles[i], shingles[j])
            if similarity >= 0.75:  # P(candidate) > 0.9999
                assert (i, j) in ours and (i, j) in theirs, similarity
            elif similarity <= 0.25:  # P(candidate) < 0.025 per pair
                assert (i, j) not in ours and (i, j) not in theirs, similarity


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
def test_optimal_bands_rows_matches_datasketch(threshold):
    lsh = datasketch.MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    assert optimal_bands_rows(threshold, NUM_PERM) == (lsh.b, lsh.r)


def test_collision_rate_follows_the_s_curve():
    """Sets with an exact Jaccard s become candidates at the rate 1 - (1 - s**r)**b (binomial 4-sigma bounds)."""
    bands, rows, pairs, size = 10, 4, 300, 200
    rng = np.random.default_rng(0)
    for similarity in (0.3, 0.55, 0.8):
        shared = round(2 * size * similarity / (1 + similarity))  # |A & B| for |A| = |B| = size
        hits = 0
        for _ in range(pairs):
            ids = rng.choice(10**9, size=2 * size - shared, replace=False).astype(np.uint64)
            a, b = mix64(ids[:size]), mix64(ids[size - shared :])
            assert abs(jaccard(a, b) - shared / (2 * size - shared)) < 1e-12
            hasher = MinHasher(bands * rows, seed=int(rng.integers(1 << 30)))
            index = LSHIndex(bands, rows)
            index.insert("a", hasher.signature_of_hashes(a))
            hits += bool(index.query(hasher.signature_of_hashes(b)))
        expected = collision_probability(shared / (2 * size - shared), bands, rows)
        assert abs(hits / pairs - expected) <= 4 * np.sqrt(expected * (1 - expected) / pairs) + 1e-9, similarity


def test_collision_probability_by_hand():
    assert collision_probability(0.8, 20, 5) == pytest.approx(1 - (1 - 0.8**5) ** 20)
    assert collision_probability(0.0, 20, 5) == 0.0 and collision_probability(1.0, 20, 5) == 1.0


def test_signatures_are_deterministic_and_estimate_one_for_copies():
    hasher = MinHasher(64, seed=3)
    text = "the quick brown fox jumps over the lazy dog again and again"
    assert np.array_equal(hasher.signature(text), MinHasher(64, seed=3).signature(text.upper() + "  "))
    assert estimate_jaccard(hasher.signature(text), hasher.signature(text)) == 1.0
    assert not np.array_equal(hasher.signature(text), MinHasher(64, seed=4).signature(text))


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="num_perm"):
        MinHasher(0)
    with pytest.raises(ValueError, match="num_perm >= 40"):
        LSHIndex(20, 2).insert(0, np.zeros(32, dtype=np.uint32))
    with pytest.raises(ValueError, match="different lengths"):
        estimate_jaccard(np.zeros(3), np.zeros(4))
