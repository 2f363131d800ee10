"""Learning-rate schedules as pure functions of the step: warmup + cosine, warmup-stable-decay, constant.

A schedule that depends on the step alone has no state, so a resumed run needs only the step (saved in every
checkpoint) to continue on the same curve. The warmup + cosine is chapter 1's
:func:`minillama.autograd.optim.cosine_lr` (one convention for both engines; Llama 3 405B decays from 8e-5 to
8e-7, 1% of the peak). Warmup-stable-decay (WSD; Hägele et al. 2024) holds the peak for most of the run and decays
only at the end: a run can be extended, or branched into several decays, and it matches cosine at equal compute.
"""

from __future__ import annotations

from minillama.autograd.optim import cosine_lr

SCHEDULES = ("cosine", "wsd", "constant")


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


def constant_lr(step: int, max_lr: float, warmup_steps: int) -> float:
    """Warmup, then ``max_lr`` for ever (useful for debugging and for short fine-tunes)."""
    return max_lr * (step + 1) / warmup_steps if step < warmup_steps else max_lr


def lr_at(step: int, config) -> float:
    """The learning rate of ``config`` (a :class:`~minillama.train.config.TrainConfig`) at optimizer step ``step``."""
    min_lr = config.lr * config.min_lr_ratio
    if config.schedule == "cosine":
        return cosine_lr(step, config.lr, config.warmup_steps, config.max_steps, min_lr)
    if config.schedule == "wsd":
        return warmup_stable_decay_lr(step, config.lr, config.warmup_steps, config.max_steps, min_lr,
                                      config.decay_fraction)
    if config.schedule == "constant":
        return constant_lr(step, config.lr, config.warmup_steps)
    raise ValueError(f"unknown schedule {config.schedule!r}; choose one of {', '.join(SCHEDULES)}")
