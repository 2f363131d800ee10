"""One optimizer step, in the order chapter 7 writes it: forward/backward over micro-batches, clip, step.

``forward_backward`` is the only function that touches the model; ``train_step`` composes the step for a caller
that has no guard (the chapter's cells, benchmarks). The trainer calls the same three pieces between its own
phases (the learning rate before, the non-finite guard between clipping and the step).

Each micro-batch's loss is multiplied by ``1 / A`` before ``backward()`` (``A`` micro-batches of ``n`` tokens):
the step should follow the gradient of the mean loss ``L = 1/A sum_a L_a``, the gradient is linear and
``backward()`` adds into ``.grad``, so the sum of the ``grad(L_a / A)`` is ``grad L``: the gradient of one batch
of ``A n`` tokens. Without ``1/A`` it would be ``A`` times too large, and clipping would act differently.
Chapter 7 derives it; under data parallelism DDP/FSDP average over ranks on top (chapter 9).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Batch = tuple[torch.Tensor, torch.Tensor]  # inputs (B, T), next-token targets (B, T)


def cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy in nats; the softmax is computed in float32 even under autocast."""
    B, T, V = logits.shape  # batch, time, vocab
    return F.cross_entropy(logits.float().view(B * T, V), targets.reshape(B * T))


def autocast(device: torch.device, amp_dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision on ``device`` in ``amp_dtype``; nothing for ``None`` (float32)."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype)


def gradient_sync(model: torch.nn.Module, enabled: bool) -> contextlib.AbstractContextManager:
    """DDP: all-reduce the gradients on the last micro-batch only (``no_sync()``); a no-op on one device and under
    FSDP, which reduce-scatters every micro-batch to keep its gradients sharded (chapter 9)."""
    if not enabled and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


def forward_backward(model: torch.nn.Module, micro_batches: Sequence[Batch], *,
                     amp_dtype: torch.dtype | None = None, grad_scaler: torch.amp.GradScaler | None = None) -> float:
    """Accumulate the gradient of the mean loss over ``micro_batches`` into ``.grad``; return that mean loss.

    ``grad_scaler`` (float16 only) multiplies the loss before ``backward()`` so that small gradients do not
    underflow float16; :func:`clip_gradients` divides it back out.
    """
    device = micro_batches[0][0].device
    total = torch.zeros((), device=device)
    for index, (inputs, targets) in enumerate(micro_batches):
        with gradient_sync(model, enabled=index == len(micro_batches) - 1):
            with autocast(device, amp_dtype):
                logits = model(inputs)  # (B, T, vocab)
            loss = cross_entropy_loss(logits, targets)
            scaled = loss / len(micro_batches)  # 1/A: see the module docstring
            (grad_scaler.scale(scaled) if grad_scaler is not None else scaled).backward()
        total += loss.detach()
    return float(total) / len(micro_batches)


def clip_gradients(model: torch.nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float,
                   grad_scaler: torch.amp.GradScaler | None = None) -> float:
    """Scale the gradients down to a global norm of at most ``grad_clip`` (0: no clipping); return the norm before."""
    if grad_scaler is not None:
        grad_scaler.unscale_(optimizer)
    max_norm = grad_clip if grad_clip > 0 else math.inf
    return float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))


def optimizer_step(optimizer: torch.optim.Optimizer, apply: bool = True,
                   grad_scaler: torch.amp.GradScaler | None = None) -> None:
    """Apply the step (``apply``; a skipped step leaves weights and moments untouched), then clear the gradients.

    With a ``grad_scaler`` the scaler decides: it skips a step whose float16 gradients overflowed and lowers its
    scale, which is float16's normal life, not a divergence.
    """
    if grad_scaler is not None:
        if apply:
            grad_scaler.step(optimizer)
        grad_scaler.update()
    elif apply:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Write ``lr`` into every parameter group (the schedule is a pure function of the step, applied here)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


@dataclass
class StepResult:
    """What one optimizer step reports: the mean loss of its micro-batches and the global gradient norm."""

    loss: float
    grad_norm: float
    applied: bool
    """False when the step was skipped (a non-finite loss or gradient norm)."""


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, micro_batches: Sequence[Batch], *,
               lr: float, grad_clip: float, amp_dtype: torch.dtype | None = None,
               grad_scaler: torch.amp.GradScaler | None = None) -> StepResult:
    """One step at learning rate ``lr``: accumulate, clip, and step unless the loss or the norm is NaN/inf."""
    set_learning_rate(optimizer, lr)
    loss = forward_backward(model, micro_batches, amp_dtype=amp_dtype, grad_scaler=grad_scaler)
    grad_norm = clip_gradients(model, optimizer, grad_clip, grad_scaler)
    applied = math.isfinite(loss) and (math.isfinite(grad_norm) or grad_scaler is not None)
    optimizer_step(optimizer, applied, grad_scaler)
    return StepResult(loss, grad_norm, applied)
