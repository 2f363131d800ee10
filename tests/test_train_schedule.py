"""Learning-rate schedules against values computed by hand."""

from __future__ import annotations

import math

import pytest

from minillama.autograd.optim import cosine_lr
from minillama.train.config import TrainConfig
from minillama.train.schedule import constant_lr, lr_at, warmup_stable_decay_lr


def test_cosine_by_hand():
    # warmup 2 of 6 steps: 1/2, 2/2, then cos over the 4 remaining steps at progress 1/4, 2/4, 3/4, 1.
    expected = [0.5, 1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4)), 0.0]
    assert [cosine_lr(s, 1.0, 2, 6) for s in range(6)] == pytest.approx(expected)
    assert cosine_lr(100, 1.0, 2, 6, min_lr=0.1) == 0.1  # past the end: the floor


def test_cosine_is_monotone_between_peak_and_floor():
    rates = [cosine_lr(s, 3e-3, 10, 200, 3e-4) for s in range(200)]
    assert max(rates) == pytest.approx(3e-3) and rates[-1] == pytest.approx(3e-4)
    after = rates[9:]
    assert all(a >= b for a, b in zip(after, after[1:], strict=False))


def test_warmup_stable_decay_by_hand():
    assert [warmup_stable_decay_lr(s, 1.0, 1, 6, 0.0, 0.5) for s in range(6)] == pytest.approx(
        [1.0, 1.0, 1.0, 2 / 3, 1 / 3, 0.0])
    rates = [warmup_stable_decay_lr(s, 1.0, 10, 100, 0.1, 0.2) for s in range(100)]
    assert rates[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert set(rates[10:80]) == {1.0}  # the stable phase
    assert rates[-1] == pytest.approx(0.1)


def test_constant_and_dispatch():
    assert [constant_lr(s, 2.0, 2) for s in (0, 1, 5)] == [1.0, 2.0, 2.0]
    config = TrainConfig(lr=1.0, min_lr_ratio=0.0, warmup_steps=2, max_steps=6, schedule="cosine")
    assert lr_at(3, config) == pytest.approx(0.5)
    assert [lr_at(s, config) for s in range(6)] == pytest.approx([cosine_lr(s, 1.0, 2, 6) for s in range(6)])
    wsd = config.replace(schedule="wsd", decay_fraction=0.5)
    assert [lr_at(s, wsd) for s in (2, 3)] == pytest.approx([1.0, 2 / 3])
