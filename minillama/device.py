"""Which device and which 16-bit format: the one resolver that ``generate``, ``train`` and ``parallel`` share.

``"auto"`` picks CUDA, then Apple's MPS, then the CPU; on CUDA the 16-bit format is bfloat16 where the GPU has it
(Ampere and later) and float16 on older ones (T4, V100). CPUs and MPS compute in float32: 16-bit matmuls are
rarely faster there, and the book's numbers should be exact.
"""

from __future__ import annotations

import torch

from minillama.errors import UserError

DTYPES = ("auto", "float32", "bfloat16", "float16")


def mps_available() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"``: CUDA > MPS > CPU; any other name is checked (a missing GPU is an error that says what to use)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}: use cpu, cuda, cuda:N, mps or auto") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"device {name!r} is not supported: use cpu, cuda, cuda:N, mps or auto")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} was asked for, but this PyTorch sees no CUDA GPU; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"device {name!r}: there are only {torch.cuda.device_count()} CUDA GPUs here")
    if device.type == "mps" and not mps_available():
        raise UserError(f"device {name!r} was asked for, but MPS is not available here; use --device cpu")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The 16-bit format to compute in on ``device`` for a ``--dtype`` choice; ``None``: float32 (no autocast).

    >>> resolve_dtype("auto", torch.device("cpu")), resolve_dtype("bfloat16", torch.device("cpu"))
    (None, torch.bfloat16)
    """
    if name not in DTYPES:
        raise UserError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    if name == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
