"""A quality classifier trained on the machine: logistic regression on hashed word uni- and bigrams.

The features of a document are the counts of its words and word pairs, hashed into ``2**dim_bits`` buckets (the
hashing trick, Weinberger et al. 2009), log-scaled and L2-normalized; the model is ``p(good) = sigmoid(w . x + b)``
trained by full-batch gradient descent with Adam on the mean cross-entropy plus an L2 penalty. This is fastText's
recipe without the embedding layer (Joulin et al. 2017); Llama 3 used fastText and Roberta-based classifiers the
same way, to keep documents that look like its references of good text (Grattafiori et al. 2024, sec. 3.1.1).
Documents are sparse rows (indices, values); a batch is their concatenation with row offsets, so one gradient
step is two ``np.bincount`` calls.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from minillama.curate.text import ngram_hashes, word_hashes, words
from minillama.errors import UserError


def features(text: str, dim_bits: int = 18) -> tuple[np.ndarray, np.ndarray]:
    """Sparse hashed uni+bigram features of ``text``: (bucket indices, values), values of unit L2 norm."""
    hashes = word_hashes(words(text))
    grams = np.concatenate([hashes, ngram_hashes(hashes, 2) if len(hashes) > 1 else hashes[:0]])
    buckets, counts = np.unique(grams >> np.uint64(64 - dim_bits), return_counts=True)
    values = np.log1p(counts.astype(np.float64))
    norm = np.linalg.norm(values)
    return buckets.astype(np.int64), values / norm if norm else values


def _batch(texts: Sequence[str], dim_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenated sparse rows: indices (nnz,), values (nnz,), row of each entry (nnz,)."""
    rows = [features(t, dim_bits) for t in texts]
    indices = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, np.int64)
    values = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0)
    row_of = np.repeat(np.arange(len(rows)), [len(r[0]) for r in rows])
    return indices, values, row_of


@dataclass
class QualityClassifier:
    """``p_good(texts)``; ``fit`` learns ``weights`` (2**dim_bits,) and ``bias``."""

    dim_bits: int = 18
    weights: np.ndarray | None = None
    bias: float = 0.0

    def _logits(self, indices: np.ndarray, values: np.ndarray, row_of: np.ndarray, n: int) -> np.ndarray:
        return np.bincount(row_of, weights=self.weights[indices] * values, minlength=n) + self.bias

    def fit(self, texts: Sequence[str], labels: Sequence[int], steps: int = 300, lr: float = 0.05,
            l2: float = 1e-4) -> list[float]:
        """Train on ``labels`` (1 = good, 0 = noise); returns the loss after each step."""
        y = np.asarray(labels, dtype=np.float64)
        if set(np.unique(y)) - {0.0, 1.0} or len(y) != len(texts):
            raise UserError("labels must be one 0 or 1 per text")
        indices, values, row_of = _batch(texts, self.dim_bits)
        n = len(y)
        self.weights, self.bias = np.zeros(2**self.dim_bits), 0.0
        m, v = np.zeros(2**self.dim_bits + 1), np.zeros(2**self.dim_bits + 1)
        beta1, beta2, eps, losses = 0.9, 0.999, 1e-8, []
        for step in range(1, steps + 1):
            p = 1.0 / (1.0 + np.exp(-self._logits(indices, values, row_of, n)))  # (n,)
            losses.append(float(-np.mean(y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12))))
            error = (p - y) / n  # d mean-loss / d logit
            grad = np.append(np.bincount(indices, weights=error[row_of] * values, minlength=2**self.dim_bits)
                             + l2 * self.weights, error.sum())
            m = beta1 * m + (1 - beta1) * grad
            v = beta2 * v + (1 - beta2) * grad**2
            update = lr * (m / (1 - beta1**step)) / (np.sqrt(v / (1 - beta2**step)) + eps)
            self.weights -= update[:-1]
            self.bias -= float(update[-1])
        return losses

    def p_good(self, texts: Sequence[str]) -> np.ndarray:
        """Probability that each text is good, shape ``(len(texts),)``."""
        if self.weights is None:
            raise ValueError("the classifier is not trained: call fit() or load() first")
        indices, values, row_of = _batch(texts, self.dim_bits)
        return 1.0 / (1.0 + np.exp(-self._logits(indices, values, row_of, len(texts))))

    def save(self, path) -> None:
        np.savez_compressed(path, weights=self.weights, bias=self.bias, dim_bits=self.dim_bits)

    @classmethod
    def load(cls, path) -> QualityClassifier:
        with np.load(path) as f:
            return cls(dim_bits=int(f["dim_bits"]), weights=f["weights"], bias=float(f["bias"]))


def precision_recall(predicted: Sequence[bool], actual: Sequence[bool]) -> tuple[float, float]:
    """Precision and recall of the positive class: ``[1, 1, 0, 0]`` vs ``[1, 0, 1, 0]`` -> (0.5, 0.5)."""
    predicted, actual = np.asarray(predicted, bool), np.asarray(actual, bool)
    true_positives = np.sum(predicted & actual)
    precision = true_positives / predicted.sum() if predicted.sum() else 0.0
    recall = true_positives / actual.sum() if actual.sum() else 0.0
    return float(precision), float(recall)


def held_out(key: str, fraction: float = 0.3) -> bool:
    """Whether the document named ``key`` belongs to the held-out split: a stable hash of the name, not its position,
    so the split survives reordering and additions."""
    return zlib.crc32(key.encode()) % 1000 < fraction * 1000


def train_and_evaluate(ids: Sequence[str], texts: Sequence[str], labels: Sequence[int], fraction: float = 0.3,
                       dim_bits: int = 18, steps: int = 300) -> tuple[QualityClassifier, dict[str, float]]:
    """Train on the documents outside the held-out split; precision and recall of "good" on the held-out ones."""
    test = [held_out(key, fraction) for key in ids]
    train_texts = [t for t, h in zip(texts, test, strict=True) if not h]
    train_labels = [y for y, h in zip(labels, test, strict=True) if not h]
    if len(set(train_labels)) < 2:
        raise UserError("the quality classifier needs good (1) and noise (0) documents to train on")
    classifier = QualityClassifier(dim_bits)
    losses = classifier.fit(train_texts, train_labels, steps=steps)
    test_texts = [t for t, h in zip(texts, test, strict=True) if h]
    test_labels = [bool(y) for y, h in zip(labels, test, strict=True) if h]
    predicted = classifier.p_good(test_texts) >= 0.5 if test_texts else []
    precision, recall = precision_recall(predicted, test_labels)
    return classifier, {"train_documents": len(train_texts), "held_out_documents": len(test_texts),
                        "final_train_loss": losses[-1], "precision": precision, "recall": recall}
