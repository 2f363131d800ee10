"""Accelerators' datasheet numbers: memory, peak 16-bit FLOP/s, memory and link bandwidth (one table).

``minillama plan`` sizes runs with it, and the trainer's MFU divides by its peak (:mod:`minillama.train.metrics`).
The peaks are the vendors' *dense* tensor-core figures (no 2:4 sparsity) for 16-bit inputs with fp32
accumulation: bf16 where the chip has it, fp16 on older GPUs (T4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class GPU:
    """One accelerator's datasheet numbers (dense, i.e. without 2:4 sparsity)."""

    name: str
    """Marketing name."""
    memory_gb: float
    """Memory as the vendor states it (the planner reads it as 10^9 bytes: a slight under-estimate for HBM, whose
    "80 GB" are 80 GiB, which leaves room for the CUDA context and the allocator's fragmentation)."""
    peak_tflops: float
    """Peak dense tensor-core TFLOP/s for 16-bit inputs with fp32 accumulation (``compute_dtype``)."""
    compute_dtype: str
    """The 16-bit format of ``peak_tflops``: bf16, or fp16 on GPUs without bf16."""
    memory_tbps: float
    """Memory bandwidth in TB/s."""
    link_gbps: float
    """Bandwidth from one GPU to the others of its node, per direction, in GB/s (NVLink, Infinity Fabric, PCIe)."""
    source: str
    """Where the numbers come from."""

    @property
    def peak_flops(self) -> float:
        return self.peak_tflops * 1e12

    @property
    def ridge_point(self) -> float:
        """Roofline ridge point (Williams et al. 2009): FLOPs per byte above which a kernel is compute-bound."""
        return self.peak_tflops * 1e12 / (self.memory_tbps * 1e12)

    def attainable_flops(self, intensity: float) -> float:
        """The roofline: ``min(peak, bandwidth * intensity)`` FLOP/s for a kernel doing ``intensity`` FLOPs per byte
        of memory traffic.

        >>> GPUS["h100"].attainable_flops(1.0) / 1e12, GPUS["h100"].attainable_flops(1000) / 1e12
        (3.35, 989.0)
        """
        return min(self.peak_tflops * 1e12, self.memory_tbps * 1e12 * intensity)


GPUS: dict[str, GPU] = {
    "h100": GPU("NVIDIA H100 SXM", 80, 989, "bf16", 3.35, 450,
                "NVIDIA H100 datasheet (SXM5): 1,979 TFLOP/s bf16 with sparsity = 989 dense; HBM3 3.35 TB/s; "
                "NVLink 4 900 GB/s bidirectional"),
    "h100-pcie": GPU("NVIDIA H100 PCIe", 80, 756, "bf16", 2.0, 64,
                     "NVIDIA H100 datasheet (PCIe): 1,513 TFLOP/s bf16 with sparsity = 756 dense; HBM2e 2.0 TB/s; "
                     "PCIe Gen5 x16"),
    "h200": GPU("NVIDIA H200 SXM", 141, 989, "bf16", 4.8, 450,
                "NVIDIA H200 datasheet: the H100's tensor cores (989 dense); 141 GB HBM3e at 4.8 TB/s; "
                "NVLink 900 GB/s"),
    "a100": GPU("NVIDIA A100 80GB SXM", 80, 312, "bf16", 2.039, 300,
                "NVIDIA A100 datasheet: 312 TFLOP/s bf16 dense; HBM2e 2,039 GB/s; NVLink 3 600 GB/s bidirectional"),
    "a100-40": GPU("NVIDIA A100 40GB SXM", 40, 312, "bf16", 1.555, 300,
                   "NVIDIA A100 datasheet: 312 TFLOP/s bf16 dense; HBM2 1,555 GB/s; NVLink 3 600 GB/s bidirectional"),
    "l4": GPU("NVIDIA L4", 24, 121, "bf16", 0.3, 32,
              "NVIDIA L4 datasheet: 242 TFLOP/s bf16 with sparsity = 121 dense; GDDR6 300 GB/s; PCIe Gen4 x16"),
    "t4": GPU("NVIDIA T4", 16, 65, "fp16", 0.32, 16,
              "NVIDIA T4 datasheet: 65 TFLOP/s fp16 mixed precision (no bf16); GDDR6 320 GB/s; PCIe Gen3 x16"),
    "mi300x": GPU("AMD Instinct MI300X", 192, 1307, "bf16", 5.3, 448,
                  "AMD MI300X datasheet: 1,307.4 TFLOP/s bf16 dense; HBM3 5.3 TB/s; "
                  "Infinity Fabric 7 x 128 GB/s bidirectional"),
}

# (pattern searched in torch.cuda.get_device_name(), key of GPUS). First match wins.

# (pattern searched in torch.cuda.get_device_name(), key of GPUS). First match wins.
_DEVICE_NAME_PATTERNS: list[tuple[str, str]] = [
    (r"H100.*PCIe", "h100-pcie"),
    (r"H100", "h100"),
    (r"H200", "h200"),
    (r"A100.*40GB", "a100-40"),
    (r"A100", "a100"),
    (r"\bL4\b", "l4"),
    (r"\bT4\b", "t4"),
    (r"MI300X", "mi300x"),
]


def gpu_for_device_name(device_name: str) -> str | None:
    """The key of :data:`GPUS` for a CUDA device name, or ``None`` when the GPU is not in the table.

    >>> gpu_for_device_name("NVIDIA H100 80GB HBM3"), gpu_for_device_name("NVIDIA A100-SXM4-40GB")
    ('h100', 'a100-40')
    """
    for pattern, key in _DEVICE_NAME_PATTERNS:
        if re.search(pattern, device_name):
            return key
    return None


def peak_flops_for_name(device_name: str) -> float | None:
    """Peak dense 16-bit FLOP/s for a CUDA device name, or ``None`` when the GPU is not in :data:`GPUS`.

    >>> peak_flops_for_name("NVIDIA H100 80GB HBM3"), peak_flops_for_name("NVIDIA A10G")
    (989000000000000.0, None)
    """
    key = gpu_for_device_name(device_name)
    return GPUS[key].peak_flops if key is not None else None
