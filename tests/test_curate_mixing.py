"""The data mix: shares within one document of the target at every step, epochs, exact resume."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pytest

from minillama.curate.mixing import Mixer

SOURCES = {"web": [f"web-{i}" for i in range(100)], "code": [f"code-{i}" for i in range(30)],
           "math": [f"math-{i}" for i in range(7)]}
WEIGHTS = {"web": 0.5, "code": 0.3, "math": 0.2}


def test_shares_follow_the_weights_at_every_step():
    mixer = Mixer(SOURCES, WEIGHTS)
    taken = {name: 0 for name in SOURCES}
    for step, (name, document) in enumerate(islice(mixer, 500), 1):
        assert document.startswith(name)
        taken[name] += 1
        for other, weight in WEIGHTS.items():
            assert abs(taken[other] - weight * step) <= 1, (step, taken)


def test_each_epoch_is_a_permutation_and_epochs_are_reported():
    mixer = Mixer(SOURCES, WEIGHTS, seed=1)
    math_docs = [doc for name, doc in islice(mixer, 350) if name == "math"]  # 70 = 10 epochs of 7
    for epoch in range(10):
        assert sorted(math_docs[7 * epoch : 7 * epoch + 7]) == sorted(SOURCES["math"])
    assert math_docs[:7] != math_docs[7:14]  # a fresh order each epoch
    assert mixer.epochs() == pytest.approx({"web": 175 / 100, "code": 105 / 30, "math": 70 / 7})


def test_resume_continues_the_same_stream():
    full = list(islice(Mixer(SOURCES, WEIGHTS, seed=5), 400))
    first = Mixer(SOURCES, WEIGHTS, seed=5)
    head = list(islice(first, 123))
    resumed = Mixer(SOURCES, WEIGHTS, seed=5, state=first.state())
    assert head + list(islice(resumed, 277)) == full
    assert list(islice(Mixer(SOURCES, WEIGHTS, seed=6), 400)) != full


def test_zero_weight_is_never_read_and_bad_weights_are_refused():
    mixer = Mixer(SOURCES, {"web": 1.0, "code": 0.0, "math": 0.0})
    assert {name for name, _ in islice(mixer, 50)} == {"web"}
    with pytest.raises(ValueError, match="weights name"):
        Mixer(SOURCES, {"web": 1.0})
    with pytest.raises(ValueError, match="positive sum"):
        Mixer(SOURCES, {"web": -1.0, "code": 0.0, "math": 0.0})
    with pytest.raises(ValueError, match="no documents"):
        Mixer({"a": [], "b": ["x"]}, {"a": 1.0, "b": 1.0})


def test_weights_need_not_sum_to_one():
    a = [n for n, _ in islice(Mixer(SOURCES, {"web": 5, "code": 3, "math": 2}), 100)]
    b = [n for n, _ in islice(Mixer(SOURCES, WEIGHTS), 100)]
    assert a == b and np.isclose(a.count("web"), 50, atol=1)
