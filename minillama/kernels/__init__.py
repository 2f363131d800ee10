"""Hand-written GPU kernels (chapter 8), each behind one switch with a tested PyTorch fallback.

:func:`rms_norm` is the entry point: the fused Triton RMSNorm when the tensor is on a CUDA device, Triton is installed
and the switch is on; otherwise :func:`rms_norm_torch`, the same computation in PyTorch, on any device. The switch is
:func:`set_triton_enabled` (or ``MINILLAMA_TRITON=0`` in the environment, read at import).

>>> import torch
>>> x, w = torch.randn(2, 3, 8), torch.ones(8)
>>> torch.allclose(rms_norm(x, w), rms_norm_reference(x, w))
True
"""

from __future__ import annotations

import functools
import os

import torch
from torch import nn

from minillama.kernels import rmsnorm_triton
from minillama.kernels.rmsnorm import RMSNormFunction, rms_norm_reference, rms_norm_torch

__all__ = ["RMSNormFunction", "rms_norm", "rms_norm_reference", "rms_norm_torch", "set_triton_enabled",
           "triton_available", "triton_enabled", "use_fused_rmsnorm", "uses_triton"]

_triton_enabled = os.environ.get("MINILLAMA_TRITON", "1") != "0"


def set_triton_enabled(enabled: bool) -> None:
    """Turn the Triton kernels on or off for the whole process (they are on by default where they can run)."""
    global _triton_enabled
    _triton_enabled = bool(enabled)


def triton_enabled() -> bool:
    """The switch's position (not whether Triton can run: see :func:`triton_available`)."""
    return _triton_enabled


def triton_available() -> bool:
    """Whether the Triton kernels can run here: Triton is installed and PyTorch sees a CUDA (or ROCm) GPU."""
    return rmsnorm_triton.AVAILABLE and torch.cuda.is_available()


def uses_triton(x: torch.Tensor) -> bool:
    """Whether :func:`rms_norm` will run the Triton kernel on ``x``."""
    return _triton_enabled and rmsnorm_triton.AVAILABLE and x.is_cuda


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """RMSNorm over the last dimension: Triton where :func:`uses_triton`, else the PyTorch fallback."""
    if uses_triton(x):
        return rmsnorm_triton.rms_norm_triton(x, weight, eps)
    return rms_norm_torch(x, weight, eps)


def _fused_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return rms_norm(x, module.weight, module.eps)


def use_fused_rmsnorm(model: nn.Module) -> nn.Module:
    """Route every :class:`minillama.model.RMSNorm` of ``model`` through :func:`rms_norm`, in place.

    Applied from outside, like activation checkpointing and ``torch.compile``: parameter names (and checkpoints) do
    not change, and the model file knows nothing about kernels.
    """
    from minillama.model import RMSNorm

    for module in model.modules():
        if isinstance(module, RMSNorm):
            module.forward = functools.partial(_fused_forward, module)
    return model
