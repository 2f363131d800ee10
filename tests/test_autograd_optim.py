"""minillama.autograd.optim against torch.optim: AdamW and SGD trajectories, clip_grad_norm_, and the schedule."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from minillama.autograd import Tensor, optim


def quadratic_grads(params: list[np.ndarray], step: int) -> list[np.ndarray]:
    """A gradient that changes with the parameters and the step (the same arrays are fed to both optimizers)."""
    return [np.sin(p * 3.0 + step) + 0.1 * p for p in params]


def run_both(make_ours: Callable[[list], Any], make_theirs: Callable[[list], Any], steps: int = 20) -> None:
    rng = np.random.default_rng(0)
    initial = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    ours = [Tensor(p.copy(), requires_grad=True) for p in initial]
    theirs = [torch.tensor(p, requires_grad=True) for p in initial]
    optimizer, reference = make_ours(ours), make_theirs(theirs)
    for step in range(steps):
        grads = quadratic_grads([p.data for p in ours], step)
        for p, t, g in zip(ours, theirs, grads, strict=True):
            p.grad, t.grad = g.copy(), torch.from_numpy(g.copy())
        optimizer.step()
        reference.step()
        for p, t in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=f"step {step}")


def test_adamw_matches_torch_over_20_steps_with_weight_decay() -> None:
    hyper = {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.1}
    run_both(lambda ps: optim.AdamW(ps, **hyper), lambda ps: torch.optim.AdamW(ps, **hyper))


def test_adamw_defaults_and_param_groups_match_torch() -> None:
    run_both(
        lambda ps: optim.AdamW([{"params": ps[:1]}, {"params": ps[1:], "weight_decay": 0.0, "lr": 0.01}]),
        lambda ps: torch.optim.AdamW([{"params": ps[:1]}, {"params": ps[1:], "weight_decay": 0.0, "lr": 0.01}]),
    )


@pytest.mark.parametrize("kwargs", [{}, {"momentum": 0.9}, {"momentum": 0.9, "weight_decay": 0.01},
                                    {"momentum": 0.5, "nesterov": True}])
def test_sgd_matches_torch(kwargs: dict) -> None:
    run_both(lambda ps: optim.SGD(ps, lr=0.1, **kwargs), lambda ps: torch.optim.SGD(ps, lr=0.1, **kwargs))


def test_learning_rate_changes_through_param_groups_are_used() -> None:
    def ours(ps: list) -> optim.AdamW:
        opt = optim.AdamW(ps, lr=0.1)
        opt.param_groups[0]["lr"] = 0.02
        return opt

    def theirs(ps: list) -> torch.optim.AdamW:
        opt = torch.optim.AdamW(ps, lr=0.1)
        opt.param_groups[0]["lr"] = 0.02
        return opt

    run_both(ours, theirs, steps=5)


def test_zero_grad_and_bad_arguments() -> None:
    p = Tensor(np.ones(2), requires_grad=True)
    p.grad = np.ones(2)
    opt = optim.SGD([p], lr=0.1)
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad, 0.0)
    opt.zero_grad()
    assert p.grad is None
    opt.step()  # no gradient: nothing happens
    np.testing.assert_array_equal(p.data, 1.0)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.AdamW([])
    with pytest.raises(ValueError, match="betas"):
        optim.AdamW([p], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [p]}, {"params": [p]}])


@pytest.mark.parametrize("max_norm, norm_type", [(0.5, 2.0), (100.0, 2.0), (0.3, float("inf")), (1.0, 1.0)])
def test_clip_grad_norm_matches_torch(max_norm: float, norm_type: float) -> None:
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((3, 4)), rng.standard_normal(6), rng.standard_normal((2, 2, 2))]
    ours = [Tensor(np.zeros_like(g), requires_grad=True) for g in grads]
    theirs = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, t, g in zip(ours, theirs, grads, strict=True):
        p.grad, t.grad = g.copy(), torch.from_numpy(g.copy())
    norm = optim.clip_grad_norm_(ours, max_norm, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    assert float(norm) == pytest.approx(expected.item(), rel=1e-12)
    assert norm.item() == float(norm)
    for p, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12)


def test_cosine_lr_by_hand_table() -> None:
    """The one warmup + cosine convention of both stages: the peak once (step W - 1), the floor at step N - 1."""
    lrs = [optim.cosine_lr(s, 1.0, 2, 6) for s in range(8)]
    expected = [0.5, 1.0, 0.8535534, 0.5, 0.1464466, 0.0, 0.0, 0.0]  # cos(pi k / 4) for k = 1..4 after the peak
    np.testing.assert_allclose(lrs, expected, atol=1e-7)
    assert optim.cosine_lr(7, 1.0, 2, 6, min_lr=0.1) == 0.1
    assert optim.cosine_lr(0, 3.0, 0, 10) == pytest.approx(1.5 * (1 + math.cos(math.pi / 10)))
    for args in [(-1, 1.0, 2, 6), (0, 1.0, -1, 6), (0, 1.0, 7, 6)]:
        with pytest.raises(ValueError, match="warmup_steps <= max_steps"):
            optim.cosine_lr(*args)


def test_cosine_lr_matches_torch_linear_warmup_then_cosine_annealing() -> None:
    max_lr, warmup, steps, floor = 1.0, 3, 10, 0.1
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=max_lr)
    schedule = torch.optim.lr_scheduler.SequentialLR(optimizer, [
        torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup, total_iters=warmup - 1),
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps - warmup, eta_min=floor)],
        milestones=[warmup - 1])
    theirs = []
    for _ in range(steps):
        theirs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    ours = [optim.cosine_lr(s, max_lr, warmup, steps, floor) for s in range(steps)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)
