"""Learning-rate schedules as pure functions of the step: warmup + cosine, and warmup-stable-decay.

A schedule that is a function of the step number alone has no state of its own, so resuming a run only needs the
step (saved in every checkpoint) to continue on exactly the same curve.

* **Warmup** (linear from 0): Adam's second-moment estimates are noisy in the first steps, and a full-size step
  taken on them can throw the weights far off; ramping the rate up avoids the early loss spikes.
* **Cosine** decay (Loshchilov & Hutter 2017, used by Llama 1-3 down to 10% of the peak) then lowers the rate
  smoothly so that the end of training averages out the gradient noise.
* **Warmup-stable-decay** (WSD; Hägele et al. 2024) keeps the peak rate for most of the run and decays only in a
  final window: a run can be extended, or branched into several decays, without restarting, and it matches cosine.
"""

from __future__ import annotations

import math


def warmup_cosine_lr(step: int, max_lr: float, warmup_steps: int, max_steps: int, min_lr: float = 0.0) -> float:
    """The learning rate for optimizer step ``step`` (0-based): linear warmup, then cosine down to ``min_lr``.

    Warmup uses ``(step + 1) / warmup_steps`` so that step 0 already learns a little and step ``warmup_steps - 1``
    reaches ``max_lr``. Example with ``max_lr=1, warmup_steps=2, max_steps=6, min_lr=0``:
    steps 0..5 -> ``0.5, 1.0, 0.854, 0.5, 0.146, 0.0``; past ``max_steps`` the rate stays at ``min_lr``.
    """
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= max_steps - 1:
        return min_lr
    progress = (step - warmup_steps + 1) / (max_steps - warmup_steps)  # in (0, 1) after warmup
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


def warmup_stable_decay_lr(
    step: int, max_lr: float, warmup_steps: int, max_steps: int, min_lr: float = 0.0, decay_fraction: float = 0.2
) -> float:
    """Warmup, then ``max_lr`` held constant, then a linear decay to ``min_lr`` over the last ``decay_fraction``.

    Example with ``max_lr=1, warmup_steps=1, max_steps=6, decay_fraction=0.5, min_lr=0``:
    steps 0..5 -> ``1, 1, 1, 0.667, 0.333, 0.0`` (the decay starts at step ``6 - 3 = 3``).
    """
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    decay_steps = max(1, round(decay_fraction * max_steps))
    decay_start = max(warmup_steps, max_steps - decay_steps)
    if step < decay_start:
        return max_lr
    if step >= max_steps - 1:
        return min_lr
    progress = (step - decay_start + 1) / (max_steps - decay_start)
    return max_lr + (min_lr - max_lr) * progress


def constant_lr(step: int, max_lr: float, warmup_steps: int, max_steps: int, min_lr: float = 0.0) -> float:
    """Warmup, then ``max_lr`` for ever (useful for debugging and for short fine-tunes)."""
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    return max_lr


def lr_at(step: int, config) -> float:
    """The learning rate of ``config`` (a :class:`~minillama.train.config.TrainConfig`) at optimizer step ``step``."""
    min_lr = config.lr * config.min_lr_ratio
    if config.schedule == "cosine":
        return warmup_cosine_lr(step, config.lr, config.warmup_steps, config.max_steps, min_lr)
    if config.schedule == "wsd":
        return warmup_stable_decay_lr(step, config.lr, config.warmup_steps, config.max_steps, min_lr,
                                      config.decay_fraction)
    if config.schedule == "constant":
        return constant_lr(step, config.lr, config.warmup_steps, config.max_steps)
    raise ValueError(f"unknown schedule {config.schedule!r}; choose cosine, wsd or constant")
