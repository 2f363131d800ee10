"""RMSNorm in PyTorch: the definition, and the same computation with a hand-derived backward (the fallback).

RMSNorm (Zhang and Sennrich 2019) normalizes each row ``x`` of ``d`` features by its root mean square and scales it:

    y = n * w,    n = x * r,    r = 1 / sqrt(mean(x^2) + eps)

Backward, for one row, with ``g = dL/dy``: ``dL/dw = sum over rows of g * n``, and, since ``dr/dx_j = -r^3 x_j / d``,

    dL/dx = r * (g*w - n * mean(g*w * n))

:func:`rms_norm_reference` is the definition, written as Meta's reference code writes it; autograd derives its
backward and keeps every intermediate (``x`` in fp32, the fp32 normalized values, ...). :class:`RMSNormFunction`
computes the same forward but writes the backward above by hand, so it saves only ``x`` and one ``r`` per row: it is
the PyTorch twin of the Triton kernel in :mod:`minillama.kernels.rmsnorm_triton`, used wherever Triton is not.
"""

from __future__ import annotations

import torch


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last dimension, in fp32, rounded to ``x``'s dtype before the
    weight multiplies it (as Meta's ``RMSNorm`` and :class:`minillama.model.RMSNorm` do)."""
    normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)
    return normed.type_as(x) * weight


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """fp32 for 16- and 32-bit inputs, fp64 for fp64 ones (so that ``gradcheck`` can check the backward)."""
    return torch.promote_types(x.dtype, torch.float32)


class RMSNormFunction(torch.autograd.Function):
    """RMSNorm with the hand-derived backward of the module docstring; saves ``x`` and ``r`` (one fp32 per row)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        x32 = x.to(_compute_dtype(x))
        rstd = torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)  # (..., d) -> (..., 1)
        ctx.save_for_backward(x, weight, rstd)
        return (x32 * rstd).type_as(x) * weight

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, weight, rstd = ctx.saved_tensors
        compute = _compute_dtype(x)
        normed = x.to(compute) * rstd  # n = x * r, recomputed: cheaper to redo than to store
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_normed = grad.to(compute) * weight.to(compute)  # dL/dn = g * w
            grad_x = rstd * (grad_normed - normed * (grad_normed * normed).mean(-1, keepdim=True))
            grad_x = grad_x.to(x.dtype)
        if ctx.needs_input_grad[1]:
            rows = (grad.to(compute) * normed.type_as(x).to(compute)).reshape(-1, x.shape[-1])  # (..., d) -> (rows, d)
            grad_weight = rows.sum(0).to(weight.dtype)
        return grad_x, grad_weight, None


def rms_norm_torch(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """RMSNorm through :class:`RMSNormFunction` (any device)."""
    return RMSNormFunction.apply(x, weight, eps)
