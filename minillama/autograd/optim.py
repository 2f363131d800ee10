"""Optimizers (``SGD``, ``AdamW``), gradient clipping and the warmup + cosine learning-rate schedule.

They update ``param.data`` in place from ``param.grad`` with the same formulas, defaults and parameter groups as
``torch.optim``, so a training loop reads the same in both engines::

    optimizer = AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, max_lr=3e-4, warmup_steps=100, max_steps=steps, min_lr=3e-5)
        loss = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .tensor import Tensor


class Optimizer:
    """Holds ``param_groups`` (dicts with ``"params"`` and hyperparameters) and per-parameter ``state``."""

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]):
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = defaults
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[Tensor, dict[str, Any]] = {}
        seen: set[int] = set()
        for group in groups:
            group = {**defaults, **group, "params": list(group["params"])}
            for param in group["params"]:
                if not isinstance(param, Tensor):
                    raise TypeError(f"optimizers take Tensors/Parameters, got {type(param).__name__}")
                if id(param) in seen:
                    raise ValueError("a parameter appears in more than one parameter group")
                seen.add(id(param))
            self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for param in group["params"]:
                if set_to_none:
                    param.grad = None
                elif param.grad is not None:
                    param.grad[...] = 0

    def step(self) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum (torch's formulation: ``buf = momentum * buf + grad``,
    ``param -= lr * buf``), Nesterov momentum and L2 weight decay added to the gradient."""

    def __init__(
        self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0.0, weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD needs lr, momentum, weight_decay >= 0; got {lr}, {momentum}, {weight_decay}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov})

    def step(self) -> None:
        for group in self.param_groups:
            lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                if weight_decay:
                    grad = grad + weight_decay * param.data
                if momentum:
                    state = self.state.setdefault(param, {})
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = np.array(grad, copy=True)
                    else:
                        state["momentum_buffer"] *= momentum
                        state["momentum_buffer"] += grad
                    buf = state["momentum_buffer"]
                    grad = grad + momentum * buf if group["nesterov"] else buf
                param.data -= lr * grad


class AdamW(Optimizer):
    """Adam {cite}`kingma2015adam` with decoupled weight decay {cite}`loshchilov2019adamw`, as ``torch.optim.AdamW``.

    Per step ``t``: ``p *= 1 - lr * wd``; ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g^2``;
    ``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.
    """

    def __init__(
        self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"AdamW needs lr, eps, weight_decay >= 0 and betas in [0, 1); got lr={lr}, "
                             f"betas={betas}, eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    def step(self) -> None:
        for group in self.param_groups:
            lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for param in group["params"]:
                grad = param.grad
                if grad is None:
                    continue
                state = self.state.get(param)
                if state is None:
                    state = self.state[param] = {
                        "step": 0, "exp_avg": np.zeros_like(param.data), "exp_avg_sq": np.zeros_like(param.data),
                    }
                state["step"] += 1
                step, exp_avg, exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]
                if weight_decay:
                    param.data *= 1 - lr * weight_decay
                exp_avg += (1 - beta1) * (grad - exp_avg)  # = b1 m + (1 - b1) g
                exp_avg_sq *= beta2
                exp_avg_sq += (1 - beta2) * (grad * grad)
                step_size = lr / (1 - beta1**step)
                denom = np.sqrt(exp_avg_sq)
                denom /= math.sqrt(1 - beta2**step)
                denom += eps
                param.data -= step_size * (exp_avg / denom)


def clip_grad_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float, norm_type: float = 2.0) -> np.floating:
    """Scale all gradients together so their global ``norm_type`` norm is at most ``max_norm``
    {cite}`pascanu2013difficulty`; returns the norm before clipping (a numpy scalar: ``float(norm)`` or
    ``norm.item()``). Same formula as torch: ``grad *= min(1, max_norm / (norm + 1e-6))``."""
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return np.float32(0.0)
    dtype = np.result_type(*grads)
    norm_type = float(norm_type)
    if math.isinf(norm_type):
        total = max(np.max(np.abs(g)) for g in grads)
    else:
        total = sum(np.sum(np.abs(g) ** norm_type, dtype=np.float64) for g in grads) ** (1.0 / norm_type)
    total = dtype.type(total)
    coef = min(1.0, max_norm / (float(total) + 1e-6))
    if coef < 1.0:
        for g in grads:
            g *= coef
    return total


def weight_decay_groups(parameters: Iterable[Any], weight_decay: float) -> list[dict[str, Any]]:
    """AdamW's two parameter groups, for either engine: matrices (embeddings, projections) decayed, vectors (norm
    gains) not: pulling a scale towards 0 is a bias, not a regularizer (Llama, GPT-2).

    >>> [len(g["params"]) for g in weight_decay_groups([np.zeros((2, 2)), np.zeros(2)], 0.1)]
    [1, 1]
    """
    parameters = [p for p in parameters if getattr(p, "requires_grad", True)]
    return [{"params": [p for p in parameters if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in parameters if p.ndim < 2], "weight_decay": 0.0}]


def cosine_lr(step: int, max_lr: float, warmup_steps: int, max_steps: int, min_lr: float = 0.0) -> float:
    """The learning rate of optimizer step ``step`` (0-based): linear warmup, then a half cosine down to ``min_lr``
    {cite}`loshchilov2017sgdr`, reached at the last step ``max_steps - 1`` and kept after it. A pure function of
    the step, so a resumed run continues on the same curve.

    Warmup is ``max_lr (step + 1) / warmup_steps``: step 0 already learns a little, step ``warmup_steps - 1`` is
    the peak, and the cosine starts from there, so the peak is used once (PyTorch's ``LinearLR`` then
    ``CosineAnnealingLR``). Example with ``max_lr=1, warmup_steps=2, max_steps=6``: steps 0..5 give
    ``0.5, 1.0, 0.854, 0.5, 0.146, 0.0``.
    """
    if step < 0 or warmup_steps < 0 or warmup_steps > max_steps:
        raise ValueError(f"need step >= 0 and 0 <= warmup_steps <= max_steps, got step={step}, "
                         f"warmup_steps={warmup_steps}, max_steps={max_steps}")
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= max_steps - 1:
        return min_lr
    progress = (step - warmup_steps + 1) / (max_steps - warmup_steps)  # in (0, 1) after the warmup
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))
