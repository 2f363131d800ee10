"""Fused RMSNorm forward and backward in Triton (Tillet et al. 2019): one read of ``x`` and one write of ``y``.

In eager PyTorch, RMSNorm is half a dozen kernels (square, mean, add, rsqrt, multiply, cast, multiply), each reading
and writing a ``(rows, d)`` tensor from and to GPU memory. The operation does about ``4 d`` FLOPs per row for ``2 d``
bytes of bf16 input, about 2 FLOP/byte, far below the H100's ridge point of about 295: it is memory-bound, so its
time is the bytes it moves. Fusing the chain into one kernel moves the minimum: read ``x`` and ``w``, write ``y``
(and one fp32 ``1/rms`` per row for the backward).

The decomposition: **one program per row** in the forward. A row of ``d`` features (up to 16,384 for Llama 3 405B)
fits in one block of registers (``BLOCK_SIZE``, the next power of two >= ``d``, masked at the end), so the mean of
squares is a single in-register reduction, ``tl.sum``. The backward needs ``dL/dw = sum over rows of g * n``, a
reduction *across* rows: each program takes a contiguous slice of rows, accumulates its partial ``dL/dw`` in
registers while it computes ``dL/dx`` row by row, and writes one partial sum; PyTorch adds the partial sums (one per
streaming multiprocessor), which is deterministic, unlike atomic adds.

The math is that of :class:`minillama.kernels.rmsnorm.RMSNormFunction`, the PyTorch fallback, which documents the
backward formula. Triton is imported lazily-guarded: on machines without it (CPU-only PyTorch, macOS) this module
imports, ``AVAILABLE`` is ``False``, and :func:`minillama.kernels.rms_norm` uses the fallback.
"""

from __future__ import annotations

import math

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only PyTorch, macOS, Windows: the PyTorch fallback is used instead
    triton = None
    tl = None

AVAILABLE = triton is not None
"""Whether Triton could be imported (it still needs a GPU, or ``TRITON_INTERPRET=1`` to run on the CPU)."""

MAX_FUSED_BYTES = 65536
"""Widest row one program holds, in fp32 registers (Triton's layer-norm tutorial): 16,384 features, Llama 3 405B's."""

if AVAILABLE:

    @triton.jit
    def _rms_norm_forward_kernel(X, W, Y, RSTD, stride_x, stride_y, n_cols, eps, BLOCK_SIZE: tl.constexpr):
        """One program normalizes one row: ``y = (x * r).to(x.dtype) * w``, and stores ``r = 1/rms(x)``."""
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK_SIZE)
        mask = cols < n_cols
        x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / n_cols + eps)
        tl.store(RSTD + row, rstd)
        normed = (x * rstd).to(X.dtype.element_ty).to(tl.float32)  # rounded to x's dtype first, as Meta does
        tl.store(Y + row * stride_y + cols, (normed * w).to(Y.dtype.element_ty), mask=mask)

    @triton.jit
    def _rms_norm_backward_kernel(DY, X, W, RSTD, DX, DW_PARTIAL, stride_dy, stride_x, stride_dx, n_rows, n_cols,
                                  rows_per_program, BLOCK_SIZE: tl.constexpr):
        """One program takes ``rows_per_program`` rows: ``dx = r * (g*w - n * mean(g*w*n))`` for each, and the
        partial sum of ``g * n`` over its rows for ``dw``."""
        program = tl.program_id(0)
        cols = tl.arange(0, BLOCK_SIZE)
        mask = cols < n_cols
        w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
        dw = tl.zeros((BLOCK_SIZE,), dtype=tl.float32)
        row_start = program * rows_per_program
        row_end = tl.minimum(row_start + rows_per_program, n_rows)
        for row in range(row_start, row_end):
            x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
            dy = tl.load(DY + row * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
            rstd = tl.load(RSTD + row)
            normed = x * rstd
            dy_w = dy * w
            dx = rstd * (dy_w - normed * (tl.sum(dy_w * normed, axis=0) / n_cols))
            tl.store(DX + row * stride_dx + cols, dx.to(DX.dtype.element_ty), mask=mask)
            dw += dy * normed.to(X.dtype.element_ty).to(tl.float32)
        tl.store(DW_PARTIAL + program * n_cols + cols, dw, mask=mask)


def _launch_settings(n_cols: int, element_size: int) -> tuple[int, int]:
    """``(BLOCK_SIZE, num_warps)`` for rows of ``n_cols`` features: a power-of-two block, more warps for wider rows."""
    block_size = triton.next_power_of_2(n_cols)
    if block_size * element_size > MAX_FUSED_BYTES:
        raise ValueError(f"the fused RMSNorm holds a row in registers; {n_cols} features of {element_size} bytes are "
                         f"more than {MAX_FUSED_BYTES} bytes: use minillama.kernels.rms_norm_torch")
    num_warps = 16 if block_size >= 8192 else 8 if block_size >= 2048 else 4  # wider rows, more threads per row
    return block_size, num_warps


def _num_programs(device: torch.device, n_rows: int) -> int:
    """Programs for the backward: one per streaming multiprocessor (4 in the CPU interpreter), at most one a row."""
    if device.type == "cuda":
        programs = torch.cuda.get_device_properties(device).multi_processor_count
    else:
        programs = 4
    return max(1, min(programs, n_rows))


class TritonRMSNormFunction(torch.autograd.Function):
    """RMSNorm over the last dimension with the two Triton kernels above; ``x`` may have any leading shape."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        shape = x.shape
        x2d = x.reshape(-1, shape[-1]).contiguous()  # (..., d) -> (rows, d)
        weight = weight.contiguous()
        n_rows, n_cols = x2d.shape
        y = torch.empty((n_rows, n_cols), dtype=torch.promote_types(x.dtype, weight.dtype), device=x.device)
        rstd = torch.empty(n_rows, dtype=torch.float32, device=x.device)
        block_size, num_warps = _launch_settings(n_cols, 4)  # rows are held in fp32
        _rms_norm_forward_kernel[(n_rows,)](x2d, weight, y, rstd, x2d.stride(0), y.stride(0), n_cols, eps,
                                            BLOCK_SIZE=block_size, num_warps=num_warps)
        ctx.save_for_backward(x2d, weight, rstd)
        ctx.shape, ctx.block_size, ctx.num_warps = shape, block_size, num_warps
        return y.view(shape)  # (rows, d) -> (..., d)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        x2d, weight, rstd = ctx.saved_tensors
        n_rows, n_cols = x2d.shape
        dy = grad.reshape(n_rows, n_cols).contiguous()  # (..., d) -> (rows, d)
        dx = torch.empty_like(x2d)
        programs = _num_programs(x2d.device, n_rows)
        rows_per_program = math.ceil(n_rows / programs)
        dw_partial = torch.empty((programs, n_cols), dtype=torch.float32, device=x2d.device)
        _rms_norm_backward_kernel[(programs,)](dy, x2d, weight, rstd, dx, dw_partial, dy.stride(0), x2d.stride(0),
                                               dx.stride(0), n_rows, n_cols, rows_per_program,
                                               BLOCK_SIZE=ctx.block_size, num_warps=ctx.num_warps)
        return dx.view(ctx.shape), dw_partial.sum(0).to(weight.dtype), None


def rms_norm_triton(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Fused RMSNorm (forward and backward in Triton); ``x`` on a CUDA device, or anywhere under ``TRITON_INTERPRET=1``.

    Same result as :func:`minillama.kernels.rmsnorm.rms_norm_reference` up to the order of the fp32 sums.
    """
    if not AVAILABLE:
        raise RuntimeError("Triton is not installed (pip install triton, on Linux with an NVIDIA or AMD GPU); "
                           "minillama.kernels.rms_norm falls back to PyTorch automatically")
    if weight.shape != x.shape[-1:]:
        raise ValueError(f"weight has shape {tuple(weight.shape)}, expected ({x.shape[-1]},) for x of shape "
                         f"{tuple(x.shape)}")
    return TritonRMSNormFunction.apply(x, weight, eps)
