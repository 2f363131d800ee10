"""The quality classifier: the same training trajectory as torch's logistic regression with Adam, and held-out
precision/recall on the dirty corpus."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minillama.curate.classifier import QualityClassifier, features, held_out, precision_recall, train_and_evaluate
from minillama.errors import UserError


def test_precision_recall_by_hand():
    assert precision_recall([1, 1, 0, 0], [1, 0, 1, 0]) == (0.5, 0.5)
    assert precision_recall([1, 1, 1, 0], [1, 1, 0, 0]) == (pytest.approx(2 / 3), 1.0)
    assert precision_recall([0, 0], [1, 0]) == (0.0, 0.0)


def test_features_are_hashed_unit_vectors():
    indices, values = features("the cat sat on the mat", dim_bits=12)
    assert np.all((0 <= indices) & (indices < 4096)) and len(np.unique(indices)) == len(indices)
    assert np.linalg.norm(values) == pytest.approx(1.0)
    assert len(indices) <= 5 + 5  # 5 distinct words, 5 bigrams


def test_training_matches_torch_logistic_regression_with_adam():
    texts = ["the cat sat on the mat", "buy cheap pills now now now", "a dog ran in the park",
             "click here for free money", "she read the book at home", "cheap cheap deals click"]
    labels = [1, 0, 1, 0, 1, 0]
    dim_bits, steps, lr, l2 = 8, 25, 0.05, 1e-3
    ours = QualityClassifier(dim_bits)
    our_losses = ours.fit(texts, labels, steps=steps, lr=lr, l2=l2)

    dense = torch.zeros(len(texts), 2**dim_bits, dtype=torch.float64)
    for row, text in enumerate(texts):
        indices, values = features(text, dim_bits)
        dense[row, torch.from_numpy(indices)] = torch.from_numpy(values)
    weights = torch.zeros(2**dim_bits, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([{"params": [weights], "weight_decay": l2}, {"params": [bias]}], lr=lr)
    y = torch.tensor(labels, dtype=torch.float64)
    torch_losses = []
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(dense @ weights + bias, y)
        torch_losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    np.testing.assert_allclose(our_losses, torch_losses, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours.weights, weights.detach().numpy(), rtol=1e-6, atol=1e-9)
    assert our_losses[-1] < 0.5 * our_losses[0]


def test_held_out_split_is_stable():
    keys = [f"doc-{i}" for i in range(2000)]
    split = [held_out(k) for k in keys]
    assert 0.25 < np.mean(split) < 0.35
    assert split == [held_out(k) for k in keys]


def test_separates_clean_text_from_machine_noise_on_held_out_documents(tmp_path):
    from minillama.curate.dirty import GOOD_KINDS, NOISE_KINDS, build_dirty_corpus

    labelled = [d for d in build_dirty_corpus() if d.domain == "prose" and d.kind in GOOD_KINDS | NOISE_KINDS]
    classifier, metrics = train_and_evaluate([d.id for d in labelled], [d.text for d in labelled],
                                             [int(d.kind in GOOD_KINDS) for d in labelled], steps=150)
    assert metrics["held_out_documents"] > 150
    assert metrics["precision"] > 0.9 and metrics["recall"] > 0.9, metrics
    classifier.save(tmp_path / "q.npz")
    loaded = QualityClassifier.load(tmp_path / "q.npz")
    np.testing.assert_array_equal(loaded.p_good(["to be or not to be"]), classifier.p_good(["to be or not to be"]))


def test_untrained_and_one_class_are_refused():
    with pytest.raises(ValueError, match="not trained"):
        QualityClassifier().p_good(["x"])
    with pytest.raises(UserError, match="good"):
        train_and_evaluate(["a", "b"], ["x", "y"], [1, 1])
