"""minillama.device: the one device and dtype resolver of generate, train and parallel."""

from __future__ import annotations

import pytest
import torch

from minillama.device import resolve_device, resolve_dtype


def test_dtypes_by_hand():
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) is None  # float32 on CPUs: exact numbers for the book
    assert resolve_dtype("float32", cpu) is None
    assert resolve_dtype("bfloat16", cpu) == torch.bfloat16 and resolve_dtype("float16", cpu) == torch.float16
    with pytest.raises(ValueError, match="dtype must be one of auto, float32, bfloat16, float16"):
        resolve_dtype("fp8", cpu)
    if torch.cuda.is_available():
        expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        assert resolve_dtype("auto", torch.device("cuda")) == expected


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    best = resolve_device("auto")
    assert best.type == ("cuda" if torch.cuda.is_available() else best.type)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU; use --device cpu"):
            resolve_device("cuda:0")
