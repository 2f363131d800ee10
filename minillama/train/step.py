"""One optimizer step: ``forward_backward`` computes a micro-batch's loss and gradients, ``train_step`` does the rest.

Keeping the two apart is what lets the same step run on one CPU, under DDP and under FSDP: ``forward_backward`` is
the only place that touches the model, and ``train_step`` owns what happens between micro-batches and the optimizer
(gradient accumulation, gradient synchronization, clipping, the non-finite guard, the learning rate).

Why each micro-batch's loss is multiplied by ``1 / grad_accum_steps`` before ``backward()``
-------------------------------------------------------------------------------------------
The step should follow the gradient of the mean loss over the whole batch of ``A`` micro-batches of ``n`` tokens:

    L = 1/(A n) * sum_{a=1..A} sum_{i in a} l_i  =  1/A * sum_a L_a,   where  L_a = 1/n * sum_{i in a} l_i

(``L_a`` is exactly what ``cross_entropy(..., reduction="mean")`` returns for micro-batch ``a``). The gradient is
linear, so ``grad L = sum_a grad(L_a / A)``; and ``backward()`` *adds* into ``.grad``. Calling ``backward()`` on
``L_a / A`` for each micro-batch therefore leaves exactly ``grad L`` in ``.grad``, the same gradient (up to float
rounding) as one big batch of ``A n`` tokens. Without the ``1/A`` the gradient would be ``A`` times too large: the
clipping threshold and Adam's epsilon would act ``A`` times differently, and SGD would take ``A`` times the step.
Under data parallelism each of ``W`` ranks does the same and DDP/FSDP *average* the gradients over ranks, so the
result is the gradient of the mean over all ``W A n`` tokens. (This assumes micro-batches of equal token counts, as
our loader yields; with padding one would weight each ``L_a`` by its number of real tokens instead.)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy in nats; the softmax is computed in float32 even under autocast."""
    B, T, V = logits.shape  # batch, time, vocab
    return F.cross_entropy(logits.float().view(B * T, V), targets.reshape(B * T))


def forward_backward(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    loss_scale: float = 1.0,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    grad_scaler: torch.amp.GradScaler | None = None,
) -> torch.Tensor:
    """Forward ``inputs`` (B, T), backpropagate ``loss * loss_scale``, return the unscaled loss (detached).

    ``grad_scaler`` (float16 only) multiplies the loss by a large factor before ``backward()`` so that small
    gradients do not underflow float16's range; ``train_step`` divides it back out before clipping.
    """
    with autocast():
        logits = model(inputs)  # (B, T, vocab)
    loss = cross_entropy_loss(logits, targets)
    scaled = loss * loss_scale
    (grad_scaler.scale(scaled) if grad_scaler is not None else scaled).backward()
    return loss.detach()


def gradient_sync(model: torch.nn.Module, enabled: bool) -> contextlib.AbstractContextManager:
    """Skip DDP's gradient all-reduce on all but the last micro-batch of a step (a no-op on one device and under FSDP).

    DDP (``no_sync()``): every rank holds whole gradients anyway, so accumulating them locally and all-reducing once
    per step gives the same averaged gradient with ``1/grad_accum_steps`` of the traffic.

    FSDP reduce-scatters after every micro-batch, on purpose. Deferring it (FSDP2's
    ``set_requires_gradient_sync(False)``) would keep each unit's *unsharded* float32 gradient until the last
    micro-batch: 4 bytes per parameter of the whole model on every GPU (280 GB for Llama 3 70B), which undoes the
    gradient sharding that FSDP exists for. Like torchtitan, minillama pays ``grad_accum_steps`` reduce-scatters per
    step to keep each GPU's gradient memory at ``1 / world_size`` of the model.
    """
    if not enabled and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


@dataclass
class StepResult:
    """What one optimizer step reports: the mean loss of its micro-batches and the global gradient norm."""

    loss: float
    grad_norm: float
    applied: bool
    """False when the step was skipped (non-finite loss or gradient, or a float16 overflow)."""
    overflow: bool = False
    """float16 only: the gradients overflowed at the current loss scale; the scaler lowers it and skips the step."""


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Write ``lr`` into every parameter group (the schedule is a pure function of the step, applied here)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    lr: float,
    grad_clip: float,
    accept: Callable[[float, float], bool] = lambda loss, grad_norm: math.isfinite(loss) and math.isfinite(grad_norm),
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    grad_scaler: torch.amp.GradScaler | None = None,
) -> StepResult:
    """Accumulate gradients over ``micro_batches``, clip, and apply one AdamW step at learning rate ``lr``.

    ``accept(loss, grad_norm)`` decides whether the step is applied (the trainer passes its
    :class:`~minillama.train.guard.NonFiniteGuard`); a rejected step leaves the weights and the optimizer state
    untouched. ``grad_clip <= 0`` disables clipping, but the norm is still computed and reported.
    """
    micro_batches = list(micro_batches)
    set_learning_rate(optimizer, lr)
    total = torch.zeros((), device=micro_batches[0][0].device)
    for index, (inputs, targets) in enumerate(micro_batches):
        with gradient_sync(model, enabled=index == len(micro_batches) - 1):
            total += forward_backward(model, inputs, targets, loss_scale=1 / len(micro_batches), autocast=autocast,
                                      grad_scaler=grad_scaler)
    if grad_scaler is not None:
        grad_scaler.unscale_(optimizer)
    max_norm = grad_clip if grad_clip > 0 else math.inf
    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
    loss = float(total) / len(micro_batches)
    overflow = grad_scaler is not None and math.isfinite(loss) and not math.isfinite(grad_norm)
    applied = False
    if overflow:  # float16's normal life: the scaler skips the step and halves the scale; not a divergence
        grad_scaler.step(optimizer)
    elif accept(loss, grad_norm):
        (grad_scaler.step(optimizer) if grad_scaler is not None else optimizer.step())
        applied = True
    if grad_scaler is not None:
        grad_scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(loss=loss, grad_norm=grad_norm, applied=applied, overflow=overflow)
