"""``minillama plan``: will a model train on a cluster, how much memory per GPU, and how long will it take?

Pure arithmetic on a :class:`~minillama.config.ModelConfig` — nothing is allocated — so it answers for the 405B model
on a laptop. For data parallelism — DDP (everything replicated) and FSDP / ZeRO-3 (weights, gradients and optimizer
state sharded over the GPUs) — each with or without activation checkpointing, and for tensor parallelism with
sequence parallelism composed with FSDP on a 2D mesh (``--tp``: what ``minillama train --parallel fsdp
--tensor-parallel T`` runs, :mod:`minillama.parallel.tensor_parallel`). Pipeline and context parallelism (the other
two dimensions of Llama 3 405B's training: 8-way tensor x 16-way pipeline x 128-way data parallel on 16,384 H100s,
Grattafiori et al. 2024) are not modelled.

**Mixed-precision convention** (ZeRO's accounting, Rajbhandari et al. 2020), bytes per parameter:

- weights, bf16: 2 (what the matmuls read);
- gradients, bf16: 2;
- optimizer state, fp32: 12 = a master copy of the weights (4) + AdamW's two moments (4 + 4).

16 bytes per parameter in total, replicated on every GPU under DDP and divided by the number of GPUs under FSDP.
FSDP2's policy of bf16 compute with fp32 sharded parameters and fp32 gradient reduction stores the same 16 bytes
split differently (fp32 weights 4 = the master copy, fp32 gradients 4, moments 8).

**Activations** (bytes per token, per GPU, 16-bit), counted tensor by tensor in the manner of Korthikanti et al. 2022
for Llama's block, with ``d = dim``, ``d_kv = n_kv_heads * head_dim``, ``f = ffn_hidden_dim``, ``H = n_heads``:

- attention: the norm's input and output, q and the attention output (``4 d`` values), k and v at their
  ``n_kv_heads`` heads (``2 d_kv``; SDPA's ``enable_gqa`` reads them without repeating them): ``8 d + 4 d_kv``
  bytes, plus the flash kernel's log-sum-exp, fp32 per head: ``4 H``. Flash attention (Dao et al. 2022) never stores
  the ``T x T`` score matrix, so Korthikanti's ``5 a s / h`` term is gone;
- SwiGLU: the norm's input and output (``2 d``), ``w1 x``, ``silu(w1 x)``, ``w3 x`` and their product (``4 f``):
  ``4 d + 8 f`` bytes;
- so one block stores ``12 d + 4 d_kv + 8 f + 4 H`` bytes per token. (Counted the same way, GPT-2's block, with all
  heads for keys and values and one GELU of ``4 d`` instead of SwiGLU's two matrices, stores ``32 d``: Korthikanti's
  ``34 s b h`` less its two dropout masks.)
- the head: the final norm's input and output (``4 d``) and the fp32 log-probabilities of the cross-entropy, saved
  for the backward, plus their gradient at the start of the backward (``4 V + 4 V``);
- with full activation checkpointing (Chen et al. 2016) each block keeps only its input, ``2 d`` bytes, and one block
  at a time is recomputed in the backward, so: ``n_layers * 2 d + block + head``.

This is what a fused or compiled block stores. Eager PyTorch stores more: minillama's ``RMSNorm`` computes in fp32
and keeps ``x.float()`` and the fp32 normalized values, ``16 d`` more bytes per token per block (chapter 8 measures
it); the fused Triton RMSNorm of :mod:`minillama.kernels` and ``torch.compile`` avoid it.

**FSDP buffers**: ``apply_fsdp`` (:mod:`minillama.parallel.parallelize`) makes, as torchtitan does, the embedding
table one unit, each block one, and the final norm with the output head one more (``V d + d`` parameters: 0.53B for
8B and 1.05B for 70B, more than a block; 2.1B for 405B, less than a block); each is gathered by one all-gather and
reduced by one reduce-scatter. A unit's reduce-scatter holds its bf16 gradient and the fp32 copy that it sends (its
weights are freed first), while FSDP gathers the unit that the backward needs next: ``2 + 4 + 2`` bytes per
parameter of a block, or, at the start of the backward, the head's ``2 + 4`` beside the last block's bf16 weights,
kept from the forward. The larger of the two: ``6 max(H, B) + 2 B`` bytes for a head unit of ``H`` and blocks of
``B`` parameters, at the start of the backward, where the activations peak too. (With tied embeddings, Llama 3.2 1B
and 3B, the one table stays in the root with the final norm: its bf16 weights and gradient are held through the
whole backward, ``2 R + 2 V d + 8 B``. The embedding table's reduce-scatter, at the very end, holds ``6 V d`` when
the activations are gone.) The order of the collectives that this rests on, and their sizes and dtypes, are checked
against FSDP2 on 2 CPU processes (``tests/test_plan.py``).

**Time** at a stated MFU (model FLOPs utilization, Chowdhery et al. 2022):
``step time = batch tokens * flops_per_token(seq) / (gpus * peak * MFU)``; activation checkpointing's recomputation
is not model FLOPs, so at the same MFU the hardware must run 4/3 faster (the planner reports that utilization).

**Communication** per GPU per optimizer step, ring collectives (a ring moves ``(G - 1) / G`` of a buffer per
all-gather or reduce-scatter and twice that per all-reduce), in the dtypes minillama's trainer uses on GPUs:

- DDP keeps fp32 parameters under bf16 autocast, so its gradients are fp32 and its all-reduce (no compression hook)
  moves ``2 * 4 N (G - 1) / G`` bytes, once per step (``no_sync`` during accumulation);
- FSDP's ``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)`` all-gathers bf16 weights, every unit in the
  forward and again in the backward except the head's unit and the last block (kept from the forward: the backward
  starts with them), and reduce-scatters fp32 gradients, after every micro-batch
  (:func:`minillama.train.step.gradient_sync`): ``(2 (2 N - H - B) + 4 N) (G - 1) / G`` bytes per micro-batch,
  about ``8 N``. That is the same as DDP's all-reduce of fp32 gradients, an fp32 reduce-scatter plus an fp32
  all-gather: FSDP's two bf16 all-gathers cost the bytes of one fp32 all-gather. (With bf16 gradients, ZeRO's
  accounting, FSDP would move 1.5 times DDP's bytes.) But DDP pays once per step and FSDP once per micro-batch.

The time (:func:`data_parallel_gbps`): NVLink inside a node; across nodes each GPU has its own 400 Gb/s NIC, as in
Meta's Llama 3 clusters, and a group with ``k`` GPUs on each node spreads the traffic over ``k`` NICs at once, so
``bytes / min(NVLink, k x 50 GB/s)``: 400 GB/s for data parallelism over all 8 GPUs of each node, 50 GB/s for one
GPU per node (tensor parallelism over the node's 8).

**Tensor parallelism** (Megatron-LM, Shoeybi et al. 2019) with sequence parallelism (Korthikanti et al. 2022), as
minillama implements it with DTensor. ``tp`` consecutive GPUs (one node's NVLink domain) form a tensor-parallel group
that is one data-parallel rank; FSDP shards over the ``dp = gpus / tp`` ranks that hold the same slice:

- *weights*: ``wq wk wv w1 w3`` are split by output features, ``wo w2`` by input features, the embedding table and
  the output head by vocabulary rows (``ceil(V / tp)`` on the rank with the most when ``tp`` does not divide ``V``);
  the RMSNorm weights (``(2 L + 1) d`` values) are replicated. Under FSDP each GPU stores 16 bytes for each of its
  slice's parameters divided by ``dp``: ``16 N / (tp dp) = 16 N / gpus``, up to the replicated norms. Tensor
  parallelism needs FSDP: minillama's trainer refuses DDP with ``tp > 1`` (DDP would average the ranks' different
  slices), and so does the planner;
- *activations*: sequence parallelism keeps the residual stream and the norms' activations split over positions
  (``T / tp`` per rank), and the tensor-parallel regions hold ``1 / tp`` of the heads and of the hidden units. But the
  input of ``wq wk wv`` and of ``w1 w3`` is the all-gathered ``(B, T, d)`` tensor, and autograd saves it whole for
  the weights' gradients (Korthikanti et al. save the sequence-parallel slice and all-gather it again in the backward;
  DTensor does not). So a block stores ``4 d + (8 d + 4 d_kv + 8 f + 4 H) / tp`` bytes per token, and
  ``12 d + ...`` at ``tp = 1`` as above; with checkpointing each block keeps its input, split over positions:
  ``2 d / tp``. These counts match what autograd saves on 2 CPU processes (``tests/test_plan.py``), where eager
  RMSNorm's fp32 copies are split over positions too;
- *the head*: the final norm's input is split over positions (``2 d / tp``), the output head's input is gathered
  (``2 d``), and the logits are gathered whole for the loss (``ColwiseParallel(output_layouts=Replicate())``), so the
  fp32 log-probabilities and their gradient, ``8 V``, are *not* divided by ``tp``: ``2 d / tp + 2 d + 8 V``. (A
  vocabulary-parallel cross-entropy, as in Megatron-LM, would divide the ``8 V`` by ``tp`` too: at 8K tokens and
  ``tp = 8`` it is 7.4 of the 405B model's 14 GB of checkpointed activations per GPU.);
- *FSDP buffers*: ``6 max(H, B) + 2 B`` as above, for one tensor-parallel slice: ``H = ceil(V / tp) d + d`` (the
  head's vocabulary rows and the replicated final norm), ``B`` = a block's matrices / ``tp`` + its two norms;
- *communication per micro-batch*: each block all-gathers its input over positions before the attention and before
  the feed-forward and reduce-scatters the partial sums of ``wo`` and ``w2``: 2 all-gathers + 2 reduce-scatters of
  ``B x T x d`` bf16 activations in the forward, as many in the backward (each one's gradient is the other), and with
  full checkpointing 2 all-gathers + 1 reduce-scatter again when the block is recomputed (non-reentrant checkpointing
  stops at the last tensor the backward needs, before ``w2``'s reduce-scatter). Plus the embedding's reduce-scatter
  (forward) and all-gather (backward), the head's input all-gather and reduce-scatter, and the all-gather of the
  ``B x T x V`` bf16 logits (its backward is a local slice). Each moves ``(tp - 1) / tp`` of the full tensor per GPU
  (counted collective by collective against DTensor in the tests); the replicated norms' gradients add an
  all-reduce of ``d`` values per norm, negligible. These run on NVLink when a group fits in a node; they wait for
  the matmuls around them and are waited on (minillama has no asynchronous tensor parallelism), so the planner flags
  a plan whose tensor-parallel communication time does not fit in the step time left over by the computation at the
  GPUs' peak. FSDP's traffic is that of the slice, ``(2 (2 N_tp - H - B) + 4 N_tp) (dp - 1) / dp`` bytes per
  micro-batch for a slice of ``N_tp`` parameters, over the data-parallel group, which spans nodes with
  ``gpus_per_node / tp`` GPUs on each (one NIC each: 50 GB/s with ``tp = 8``);
- *time*: tensor parallelism adds no model FLOPs, so the step time at a given MFU is unchanged; its communication
  time is reported beside data parallelism's.

The limits of data parallelism that the plans show: DDP replicates all 16 bytes per parameter (a 70B model needs
1.1 TB per GPU), and data parallelism needs at least one sequence per data-parallel rank, so a 16M-token batch of
8,192-token sequences (2,048 of them) cannot keep more than 2,048 ranks busy. Beyond that, each model replica must
itself be split: with ``tp = 8`` a rank is 8 GPUs, and 2,048 ranks are 16,384 GPUs — Meta's count; Meta split each
replica 16 ways more with pipeline parallelism (Grattafiori et al. 2024, §3.3.2), which this planner does not model.

>>> from minillama.config import get_preset
>>> p = plan_training(get_preset("llama3.1-8b"), gpus=8, gpu="h100", parallel="fsdp", activation_checkpointing=True)
>>> round(p.memory.weights / 1e9, 2), p.fits, p.grad_accum_steps
(2.01, True, 256)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from minillama.config import PRESETS, ModelConfig, get_preset
from minillama.errors import UserError

# --- hardware ------------------------------------------------------------------------------------------------------


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

INTERNODE_GBPS = 50.0
"""Network bandwidth per GPU across nodes, per direction: 400 Gb/s (one InfiniBand/RoCE NIC per GPU, Llama 3 §3.3.1)."""

BYTES_WEIGHTS = 2  # bf16
BYTES_GRADIENTS = 2  # bf16
BYTES_OPTIMIZER = 12  # fp32 master weights + AdamW's first and second moments
BYTES_GATHERED = 2  # FSDP's param_dtype, bf16: the gathered weights and the gradients autograd computes for them
BYTES_REDUCED = 4  # fp32 gradient reduction: FSDP's reduce_dtype; DDP's gradients of fp32 parameters under autocast


def gpu_for_device_name(device_name: str) -> str | None:
    """The key of :data:`GPUS` for a CUDA device name, or ``None`` when the GPU is not in the table.

    >>> gpu_for_device_name("NVIDIA H100 80GB HBM3"), gpu_for_device_name("NVIDIA A100-SXM4-40GB")
    ('h100', 'a100-40')
    """
    for pattern, key in _DEVICE_NAME_PATTERNS:
        if re.search(pattern, device_name):
            return key
    return None


def parse_count(text: str | int, *, binary: bool = False) -> int:
    """``"16M"`` -> a number. Suffixes K, M, B/G, T; powers of two with ``binary`` (batch sizes), else of ten.

    Llama 3's "16M-token batch" is 2,048 sequences of 8,192 tokens = 2^24, so batch sizes read suffixes in powers of
    two; token budgets ("15.6T tokens") in powers of ten.

    >>> parse_count("16M", binary=True), parse_count("15.6T"), parse_count("8192")
    (16777216, 15600000000000, 8192)
    """
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kKmMbBgGtT]?)\s*", str(text))
    if match is None:
        raise ValueError(f"cannot read {text!r} as a count: write e.g. 8192, 16M or 15.6T")
    number, suffix = float(match.group(1)), match.group(2).upper().replace("G", "B")
    power = {"": 0, "K": 1, "M": 2, "B": 3, "T": 4}[suffix]
    return int(round(number * (1024 if binary else 1000) ** power))


# --- memory --------------------------------------------------------------------------------------------------------


def block_activation_bytes(config: ModelConfig, tensor_parallel: int = 1) -> int:
    """Bytes one block stores for the backward, per token and GPU, without checkpointing:
    ``4 d + (8 d + 4 d_kv + 8 f + 4 H) / tp``, which is ``12 d + 4 d_kv + 8 f + 4 H`` without tensor parallelism.

    For Llama 3 8B (d = 4096, d_kv = 8 * 128 = 1024, f = 14336, H = 32): 49,152 + 4,096 + 114,688 + 128 = 168,064;
    with ``tp = 8``: 16,384 + 151,680 / 8 = 35,344. The ``4 d`` are the all-gathered inputs of the attention's and the
    feed-forward's first matmuls, which every rank of the group saves whole. ``tp`` must divide ``n_heads``,
    ``n_kv_heads`` and ``ffn_hidden_dim``, as :func:`~minillama.parallel.tensor_parallel.check_tensor_parallel`
    requires.
    """
    kv_dim = config.n_kv_heads * config.head_dim
    split = 8 * config.dim + 4 * kv_dim + 8 * config.ffn_hidden_dim + 4 * config.n_heads
    return 4 * config.dim + split // tensor_parallel


def head_activation_bytes(config: ModelConfig, tensor_parallel: int = 1) -> int:
    """Bytes per token and GPU of the final norm and the loss: ``2 d / tp + 2 d + 8 V`` (the norm's input split over
    positions, the output head's gathered input, the fp32 log-probabilities of the gathered logits and their
    gradient), ``4 d + 8 V`` without tensor parallelism."""
    return 2 * config.dim // tensor_parallel + 2 * config.dim + 8 * config.vocab_size


def activation_bytes(config: ModelConfig, tokens: int, activation_checkpointing: bool, tensor_parallel: int = 1) -> int:
    """Peak activation memory per GPU of one forward + backward over ``tokens`` tokens (micro-batch x sequence
    length), with the blocks split over ``tensor_parallel`` GPUs.

    Without checkpointing every block keeps everything: ``n_layers * block``; with (full, per block) each block keeps
    its ``2 d``-byte input (``2 d / tp`` with sequence parallelism) and one block at a time is recomputed:
    ``n_layers * 2 d / tp + block``. Plus the head.
    """
    block = block_activation_bytes(config, tensor_parallel)
    if activation_checkpointing:
        per_token = config.n_layers * 2 * config.dim // tensor_parallel + block
    else:
        per_token = config.n_layers * block
    return tokens * (per_token + head_activation_bytes(config, tensor_parallel))


def tensor_parallel_params(config: ModelConfig, tensor_parallel: int = 1) -> int:
    """Parameters of one tensor-parallel rank's slice: every block's matrices / ``tp``, ``ceil(V / tp)`` rows of the
    embedding table and of the output head, and the replicated norms; ``num_params()`` when ``tp`` is 1.

    >>> config = get_preset("llama3.1-8b")
    >>> tensor_parallel_params(config, 8), config.num_params() // 8
    (1004015616, 1003782656)
    """
    norms = (2 * config.n_layers + 1) * config.dim
    tables = config.vocab_size * config.dim * (1 if config.tie_embeddings else 2)
    matrices = config.num_params() - norms - tables
    rows = -(-config.vocab_size // tensor_parallel)
    return matrices // tensor_parallel + norms + rows * config.dim * (1 if config.tie_embeddings else 2)


class FSDPUnits(NamedTuple):
    """Parameters of one tensor-parallel slice in each kind of FSDP unit that ``apply_fsdp`` makes (a unit is
    gathered by one all-gather and reduced by one reduce-scatter)."""

    embedding: int
    """The embedding table, ``ceil(V / tp) d``, first in the forward and last in the backward; 0 with tied
    embeddings, whose table is in the head's unit."""
    block: int
    """One transformer block: its matrices / ``tp`` and its two norms whole."""
    head: int
    """The final norm and the output head, ``ceil(V / tp) d + d``, last in the forward and first in the backward; with
    tied embeddings the root: the shared table and the final norm, used first and last in both."""


def fsdp_units(config: ModelConfig, tensor_parallel: int = 1) -> FSDPUnits:
    """The FSDP units of one tensor-parallel slice, as ``apply_fsdp`` makes them.

    >>> fsdp_units(get_preset("llama3.1-8b"))  # V d; d (2 d + 2 d_kv) + 3 d f + 2 d; V d + d
    FSDPUnits(embedding=525336576, block=218112000, head=525340672)
    """
    tables = 1 if config.tie_embeddings else 2
    block = (config.num_params() - config.dim - tables * config.vocab_size * config.dim) // config.n_layers
    norms = 2 * config.dim
    table = -(-config.vocab_size // tensor_parallel) * config.dim
    return FSDPUnits(embedding=0 if config.tie_embeddings else table,
                     block=(block - norms) // tensor_parallel + norms, head=table + config.dim)


def largest_fsdp_unit(config: ModelConfig, tensor_parallel: int = 1) -> int:
    """Parameters in the largest FSDP unit of one tensor-parallel slice (:func:`fsdp_units`): the size of the largest
    all-gather."""
    return max(fsdp_units(config, tensor_parallel))


def fsdp_buffer_bytes(config: ModelConfig, tensor_parallel: int = 1) -> int:
    """Bytes of unsharded FSDP buffers per GPU at the start of the backward, where the activations peak too.

    A unit's reduce-scatter holds its bf16 gradient and the fp32 copy it sends, ``2 + 4`` bytes per parameter (its
    weights are freed first), while the unit that the backward reaches next is gathered, ``2`` bytes per parameter.
    With an untied head (``H`` parameters), the head's reduce-scatter comes first, beside the last block's weights
    (kept from the forward), then each block's beside the next block's: ``6 max(H, B) + 2 B`` for blocks of ``B``
    parameters. With tied embeddings the root (``R`` = the shared table and the final norm) keeps its bf16 weights and
    the table's bf16 gradient (``ceil(V / tp) d``) through the whole backward, until the embedding adds its part and
    the root reduce-scatters, last: ``2 R + 2 V d + 8 B``. (The embedding table's own reduce-scatter, at the very end,
    holds ``6`` bytes per row parameter once the activations are gone.)

    >>> fsdp_buffer_bytes(get_preset("llama3.1-8b"))  # 6 x 525,340,672 + 2 x 218,112,000
    3588268032
    """
    units = fsdp_units(config, tensor_parallel)
    gradient = BYTES_GATHERED + BYTES_REDUCED  # a reduce-scatter's bf16 gradient and its fp32 copy
    if config.tie_embeddings:
        table = units.head - config.dim
        return (BYTES_GATHERED * units.head + BYTES_GATHERED * table
                + (gradient + BYTES_GATHERED) * units.block)
    return gradient * max(units.head, units.block) + BYTES_GATHERED * units.block


def fsdp_comm_bytes(config: ModelConfig, data_parallel: int, tensor_parallel: int = 1) -> int:
    """Bytes each GPU sends for FSDP in one forward + backward (one micro-batch), ring collectives over
    ``data_parallel`` ranks: bf16 all-gathers of every unit in the forward and, in the backward, of all but the two
    that keep their weights from the forward because the backward starts with them (the head's unit, ``H``, and the
    last block, ``B``): ``2 (2 N - H - B)``; and the fp32 reduce-scatter of the gradients, ``4 N``, for a slice of
    ``N`` parameters; ``(dp - 1) / dp`` of that. (The embedding table is gathered again for its backward, which does
    not read it: FSDP gathers every unit before its backward.)

    >>> fsdp_comm_bytes(get_preset("llama3.1-8b"), 8)  # (2 (2 N - H - B) + 4 N) x 7 / 8 = 54.9 GB
    54910786560
    """
    n_params = tensor_parallel_params(config, tensor_parallel)
    units = fsdp_units(config, tensor_parallel)
    full = BYTES_GATHERED * (2 * n_params - units.head - units.block) + BYTES_REDUCED * n_params
    return full * (data_parallel - 1) // data_parallel


def data_parallel_gbps(gpu: GPU, gpus: int, tensor_parallel: int = 1, gpus_per_node: int = 8,
                       internode_gbps: float = INTERNODE_GBPS) -> float:
    """Bandwidth per GPU, GB/s per direction, of a data-parallel group's collectives: ``bytes sent / this`` is their
    time.

    Inside a node: NVLink. Across nodes, a ring (or NCCL's hierarchical) collective over a group with ``k`` GPUs on
    each node runs ``k`` channels side by side, one through each GPU's own NIC, as in Meta's Llama 3 clusters and
    DGX H100 nodes (eight 400 Gb/s NICs per node, one per GPU; Grattafiori et al. 2024, §3.3.1): each GPU still sends
    its bytes over NVLink, and the bytes that cross nodes are shared by the node's ``k`` NICs. So the time is about
    ``max(bytes / NVLink, bytes / (k x NIC))`` = ``bytes / min(NVLink, k x NIC)``. ``k = gpus_per_node / tp``: 1 with
    tensor parallelism over a whole node (each data-parallel ring hops node to node through every GPU's NIC), 8 for
    FSDP over all the GPUs of 8-GPU nodes (8 x 50 = 400 GB/s, a little under NVLink's 450).

    >>> h100 = GPUS["h100"]
    >>> data_parallel_gbps(h100, 8), data_parallel_gbps(h100, 64), data_parallel_gbps(h100, 64, tensor_parallel=8)
    (450, 400.0, 50.0)
    """
    if gpus <= gpus_per_node:
        return gpu.link_gbps
    per_node = max(1, gpus_per_node // tensor_parallel)
    return min(gpu.link_gbps, per_node * internode_gbps)


def tensor_parallel_comm_bytes(config: ModelConfig, tokens: int, activation_checkpointing: bool,
                               tensor_parallel: int) -> int:
    """Bytes each GPU sends for tensor parallelism in one forward + backward over ``tokens`` tokens (micro-batch x
    sequence length), ring collectives within the group.

    With ``S = tokens * d * 2`` bytes (a bf16 ``(B, T, d)`` activation): per block, ``4 S`` forward (2 all-gathers,
    2 reduce-scatters), ``4 S`` backward, and ``3 S`` more for the recomputation under checkpointing; the embedding
    and the head's input, ``2 S`` each; the logits' all-gather, ``tokens * V * 2``. Each collective moves
    ``(tp - 1) / tp`` of its full tensor per GPU. Zero when ``tp`` is 1.

    >>> nano = get_preset("nano", tie_embeddings=False)  # 2 layers, d = 64, V = 256
    >>> tensor_parallel_comm_bytes(nano, 32, False, 2)  # (2 * 8 + 4) * 32 * 64 * 2 / 2 + 32 * 256 * 2 / 2
    49152
    """
    per_block = 8 + (3 if activation_checkpointing else 0)
    activation = tokens * config.dim * 2
    logits = tokens * config.vocab_size * 2
    full = (config.n_layers * per_block + 4) * activation + logits
    return full * (tensor_parallel - 1) // tensor_parallel


@dataclass(frozen=True)
class MemoryPerGPU:
    """Bytes per GPU, by what they hold."""

    weights: int
    gradients: int
    optimizer: int
    fsdp_buffers: int
    activations: int
    total: int = field(init=False)

    def __post_init__(self) -> None:
        total = self.weights + self.gradients + self.optimizer + self.fsdp_buffers + self.activations
        object.__setattr__(self, "total", total)


def memory_per_gpu(config: ModelConfig, *, gpus: int, parallel: str, activation_checkpointing: bool,
                   tokens_per_micro_batch: int, tensor_parallel: int = 1) -> MemoryPerGPU:
    """Per-GPU memory under ``parallel`` = ``"ddp"`` (replicated) or ``"fsdp"`` (sharded over ``gpus``), each
    model replica split over ``tensor_parallel`` GPUs (FSDP then shards over ``gpus / tensor_parallel``)."""
    if parallel not in ("ddp", "fsdp"):
        raise ValueError(f"parallel must be 'ddp' or 'fsdp', got {parallel!r}")
    n_params = tensor_parallel_params(config, tensor_parallel)
    data_parallel = gpus // tensor_parallel
    shards = data_parallel if parallel == "fsdp" else 1
    buffers = parallel == "fsdp" and data_parallel > 1
    return MemoryPerGPU(
        weights=math.ceil(BYTES_WEIGHTS * n_params / shards),
        gradients=math.ceil(BYTES_GRADIENTS * n_params / shards),
        optimizer=math.ceil(BYTES_OPTIMIZER * n_params / shards),
        fsdp_buffers=fsdp_buffer_bytes(config, tensor_parallel) if buffers else 0,
        activations=activation_bytes(config, tokens_per_micro_batch, activation_checkpointing, tensor_parallel),
    )


# --- the plan ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingPlan:
    """One training setup and what it costs; build it with :func:`plan_training`."""

    model: str
    n_params: int
    gpu: str
    gpus: int
    parallel: str
    tensor_parallel: int
    """GPUs of each tensor-parallel group (1 = none)."""
    data_parallel: int
    """``gpus / tensor_parallel``: the ranks that FSDP shards over and that the batch is dealt to."""
    activation_checkpointing: bool
    seq_len: int
    batch_tokens: int
    """Tokens per optimizer step, over all GPUs."""
    micro_batch: int
    """Sequences per data-parallel rank per forward/backward (the GPUs of a tensor-parallel group share them)."""
    grad_accum_steps: int
    """Micro-batches per data-parallel rank per optimizer step."""
    memory: MemoryPerGPU
    memory_capacity: int
    """Bytes of memory per GPU."""
    fits: bool
    """Whether ``memory.total`` fits in ``memory_capacity``."""
    mfu: float
    flops_per_token: int
    step_time_s: float
    tokens_per_s: float
    tokens_per_day: float
    hardware_utilization: float
    """Share of the peak the hardware must sustain for ``mfu``, recomputation included (4/3 x with checkpointing)."""
    comm_bytes_per_step: int
    """Bytes each GPU sends per optimizer step for data parallelism (DDP all-reduce, or FSDP all-gathers +
    reduce-scatters)."""
    comm_time_s: float
    """``comm_bytes_per_step`` at the slowest link of the data-parallel ring."""
    tensor_parallel_comm_bytes_per_step: int
    """Bytes each GPU sends per optimizer step within its tensor-parallel group (activations' all-gathers and
    reduce-scatters); 0 without tensor parallelism."""
    tensor_parallel_comm_time_s: float
    """``tensor_parallel_comm_bytes_per_step`` at the group's link (NVLink when the group fits in a node)."""
    train_tokens: int | None
    train_days: float | None
    problems: tuple[str, ...]
    """Why the plan cannot run as stated (memory, batch too small for the GPUs, communication-bound), or empty."""
    notes: tuple[str, ...] = ()
    """What runs but costs (a tensor-parallel group that crosses nodes), or empty."""

    @property
    def ok(self) -> bool:
        return not self.problems


def plan_training(config: ModelConfig, *, gpus: int, gpu: str = "h100", parallel: str = "fsdp",
                  activation_checkpointing: bool = False, seq_len: int | None = None,
                  batch_tokens: int | str = "16M", micro_batch: int = 1, mfu: float = 0.4,
                  train_tokens: int | str | None = None, gpus_per_node: int = 8,
                  internode_gbps: float = INTERNODE_GBPS, tensor_parallel: int = 1,
                  model: str | None = None) -> TrainingPlan:
    """Memory per GPU, step time and feasibility of training ``config`` with data parallelism, optionally with
    tensor parallelism over groups of ``tensor_parallel`` GPUs (FSDP only).

    ``seq_len`` defaults to 8,192 (Llama 3's pre-training context) or the model's ``max_seq_len`` if shorter;
    ``batch_tokens`` (``"16M"`` = 2^24) must be a whole number of sequences; ``micro_batch`` sequences per
    data-parallel rank (per GPU without tensor parallelism) go through each forward/backward, and gradient
    accumulation makes up the rest of the batch.
    """
    if gpu not in GPUS:
        raise ValueError(f"unknown GPU {gpu!r}; choose one of: {', '.join(GPUS)}")
    spec = GPUS[gpu]
    seq_len = min(8192, config.max_seq_len) if seq_len is None else seq_len
    batch_tokens = parse_count(batch_tokens, binary=True)
    for name, value in (("gpus", gpus), ("seq_len", seq_len), ("batch_tokens", batch_tokens),
                        ("micro_batch", micro_batch), ("gpus_per_node", gpus_per_node),
                        ("tensor_parallel", tensor_parallel)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu!r}")
    if not (math.isfinite(internode_gbps) and internode_gbps > 0):
        raise ValueError(f"internode_gbps must be a positive number of GB/s, got {internode_gbps!r}")
    if batch_tokens % seq_len:
        raise ValueError(f"batch_tokens ({batch_tokens:,}) must be a whole number of {seq_len:,}-token sequences")
    tp = tensor_parallel
    if tp > 1:
        if parallel != "fsdp":
            raise ValueError(f"tensor parallelism composes with FSDP only (a 2D mesh), as in minillama's trainer: "
                             f"{parallel!r} would average the ranks' different slices of each weight; use "
                             f"--parallel fsdp with --tp {tp}")
        if gpus % tp:
            raise ValueError(f"{gpus:,} GPUs cannot form tensor-parallel groups of {tp}: use a multiple of {tp} GPUs")
        # imported here: the rest of the planner is arithmetic and does not need torch.distributed
        from minillama.parallel.tensor_parallel import check_tensor_parallel

        check_tensor_parallel(config, tp, seq_len)
    data_parallel = gpus // tp

    problems: list[str] = []
    notes: list[str] = []
    sequences = batch_tokens // seq_len
    if seq_len > config.max_seq_len:
        problems.append(f"sequence length {seq_len:,} exceeds the model's max_seq_len {config.max_seq_len:,}")
    # the units the batch is dealt to: GPUs, or data-parallel ranks of tp GPUs each
    ranks = f"{gpus:,} GPUs" if tp == 1 else f"{data_parallel:,} data-parallel ranks ({gpus:,} GPUs / TP {tp})"
    rank = "GPU" if tp == 1 else "data-parallel rank"
    if sequences < data_parallel:
        problems.append(f"the batch has {sequences:,} sequences, fewer than the {ranks}: data parallelism needs at "
                        f"least {data_parallel * seq_len:,} tokens per batch here, or "
                        f"{'more ' if tp > 1 else ''}tensor/pipeline parallelism")
        per_rank = 1
    else:
        per_rank = sequences // data_parallel
        if sequences % data_parallel:
            problems.append(f"{sequences:,} sequences do not split evenly over {ranks}")
    micro_batch = min(micro_batch, per_rank)
    if per_rank % micro_batch:
        problems.append(f"{per_rank} sequences per {rank} are not a whole number of micro-batches of {micro_batch}")
    grad_accum_steps = max(1, per_rank // micro_batch)

    memory = memory_per_gpu(config, gpus=gpus, parallel=parallel, activation_checkpointing=activation_checkpointing,
                            tokens_per_micro_batch=micro_batch * seq_len, tensor_parallel=tp)
    capacity = int(spec.memory_gb * 1e9)
    fits = memory.total <= capacity
    if not fits:
        problems.append(f"needs {memory.total / 1e9:,.1f} GB per GPU, the {spec.name} has {spec.memory_gb:g} GB")

    flops_per_token = config.flops_per_token(seq_len)
    tokens_per_s = gpus * spec.peak_flops * mfu / flops_per_token
    step_time = batch_tokens / tokens_per_s

    n_params = config.num_params()
    if parallel == "ddp":  # one all-reduce of the fp32 gradients per step
        comm_bytes = 2 * BYTES_REDUCED * n_params * (data_parallel - 1) // data_parallel
    else:  # gathers and a reduce-scatter per micro-batch
        comm_bytes = grad_accum_steps * fsdp_comm_bytes(config, data_parallel, tp)
    link_gbps = data_parallel_gbps(spec, gpus, tp, gpus_per_node, internode_gbps)
    comm_time = comm_bytes / (link_gbps * 1e9)
    if comm_time > step_time:
        problems.append(f"communication ({comm_time:,.1f} s per step at {link_gbps:g} GB/s) takes longer than the "
                        f"computation ({step_time:,.1f} s at {mfu:.0%} MFU): the stated MFU is out of reach")

    hardware_utilization = mfu * (4 / 3 if activation_checkpointing else 1)
    tp_comm_bytes = grad_accum_steps * tensor_parallel_comm_bytes(config, micro_batch * seq_len,
                                                                  activation_checkpointing, tp)
    # tensor-parallel groups are tp consecutive GPUs: on NVLink if they fit evenly in the nodes
    tp_crosses_nodes = gpus > gpus_per_node and gpus_per_node % tp != 0
    tp_link_gbps = min(spec.link_gbps, internode_gbps) if tp_crosses_nodes else spec.link_gbps
    tp_comm_time = tp_comm_bytes / (tp_link_gbps * 1e9)
    if tp_crosses_nodes:
        notes.append(f"tensor-parallel groups of {tp} GPUs do not fit evenly in nodes of {gpus_per_node}: their "
                     f"per-block collectives cross the network at {tp_link_gbps:g} GB/s instead of NVLink's "
                     f"{spec.link_gbps:g} GB/s; keep --tp a divisor of the GPUs per node")
    compute_time = step_time * hardware_utilization  # the FLOPs, recomputation included, at the GPUs' peak
    if tp > 1 and compute_time + tp_comm_time > step_time:
        problems.append(f"tensor-parallel communication ({tp_comm_time:,.1f} s per step at {tp_link_gbps:g} GB/s, "
                        f"not overlapped with the matmuls that wait for it) and the computation at peak "
                        f"({compute_time:,.1f} s) do not fit in the {step_time:,.1f} s step of {mfu:.0%} MFU")

    train_tokens = parse_count(train_tokens) if train_tokens is not None else None
    train_days = train_tokens / tokens_per_s / 86400 if train_tokens is not None else None
    return TrainingPlan(
        model=model or _preset_name(config), n_params=n_params, gpu=gpu, gpus=gpus, parallel=parallel,
        tensor_parallel=tp, data_parallel=data_parallel, activation_checkpointing=activation_checkpointing,
        seq_len=seq_len, batch_tokens=batch_tokens, micro_batch=micro_batch, grad_accum_steps=grad_accum_steps,
        memory=memory, memory_capacity=capacity, fits=fits, mfu=mfu, flops_per_token=flops_per_token,
        step_time_s=step_time, tokens_per_s=tokens_per_s, tokens_per_day=tokens_per_s * 86400,
        hardware_utilization=hardware_utilization, comm_bytes_per_step=comm_bytes, comm_time_s=comm_time,
        tensor_parallel_comm_bytes_per_step=tp_comm_bytes, tensor_parallel_comm_time_s=tp_comm_time,
        train_tokens=train_tokens, train_days=train_days, problems=tuple(problems), notes=tuple(notes),
    )


def plan_grid(config: ModelConfig, *, parallels: tuple[str, ...] | None = None,
              checkpointing: tuple[bool, ...] = (False, True), **kwargs) -> list[TrainingPlan]:
    """:func:`plan_training` for each data-parallel strategy, without and with activation checkpointing.

    ``parallels`` defaults to DDP and FSDP, or to FSDP alone with ``tensor_parallel`` > 1 (which needs FSDP).
    """
    if parallels is None:
        parallels = ("ddp", "fsdp") if kwargs.get("tensor_parallel", 1) == 1 else ("fsdp",)
    return [plan_training(config, parallel=parallel, activation_checkpointing=ac, **kwargs)
            for parallel in parallels for ac in checkpointing]


def _preset_name(config: ModelConfig) -> str:
    return next((name for name, preset in PRESETS.items() if preset == config), "custom")


# --- output --------------------------------------------------------------------------------------------------------


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:,.1f}"


def plan_label(plan: TrainingPlan) -> str:
    """A plan's column name: ``"FSDP"``, ``"DDP + AC"``, ``"FSDP x TP8 + AC"``."""
    tensor_parallel = f" x TP{plan.tensor_parallel}" if plan.tensor_parallel > 1 else ""
    return plan.parallel.upper() + tensor_parallel + (" + AC" if plan.activation_checkpointing else "")


def format_plans(plans: list[TrainingPlan]) -> str:
    """A side-by-side table of plans that share a model, GPU count, tensor-parallel degree and batch (the output of
    ``minillama plan``)."""
    first = plans[0]
    spec = GPUS[first.gpu]
    sequences = first.batch_tokens // first.seq_len
    tensor_parallel = any(p.tensor_parallel > 1 for p in plans)
    lines = [
        f"{first.model}: {first.n_params / 1e9:,.2f} B parameters on {first.gpus:,} x {spec.name} "
        f"({spec.memory_gb:g} GB, {spec.peak_tflops:g} TFLOP/s {spec.compute_dtype} dense)",
    ]
    if tensor_parallel:
        lines.append(f"mesh: {first.data_parallel:,} data-parallel ranks (FSDP) x {first.tensor_parallel} "
                     f"tensor-parallel GPUs (with sequence parallelism)")
    lines += [
        f"batch: {first.batch_tokens:,} tokens = {sequences:,} sequences of {first.seq_len:,}; "
        f"per {'data-parallel rank' if tensor_parallel else 'GPU'} {first.micro_batch} x {first.grad_accum_steps} "
        f"accumulation step(s)",
        "",
    ]
    names = [plan_label(p) for p in plans]
    width = max(12, *(len(n) + 2 for n in names))
    row = "{:<38}" + f"{{:>{width}}}" * len(plans)
    lines.append(row.format("memory per GPU (GB)", *names))
    for label, key in (("weights (bf16, 2 B/param)", "weights"), ("gradients (bf16, 2 B/param)", "gradients"),
                       ("optimizer (fp32 master+m+v, 12 B)", "optimizer"), ("FSDP unsharded buffers", "fsdp_buffers"),
                       ("activations", "activations"), ("total", "total")):
        lines.append(row.format("  " + label, *(_gb(getattr(p.memory, key)) for p in plans)))
    lines.append(row.format(f"fits in {spec.memory_gb:g} GB?", *("yes" if p.fits else "NO" for p in plans)))
    if tensor_parallel:
        lines.append(row.format("DP communication per step (GB/GPU)", *(_gb(p.comm_bytes_per_step) for p in plans)))
        lines.append(row.format("DP communication time per step (s)", *(f"{p.comm_time_s:,.1f}" for p in plans)))
        lines.append(row.format("TP communication per step (GB/GPU)",
                                *(_gb(p.tensor_parallel_comm_bytes_per_step) for p in plans)))
        lines.append(row.format("TP communication time per step (s)",
                                *(f"{p.tensor_parallel_comm_time_s:,.1f}" for p in plans)))
    else:
        lines.append(row.format("communication per step (GB/GPU)", *(_gb(p.comm_bytes_per_step) for p in plans)))
        lines.append(row.format("communication time per step (s)", *(f"{p.comm_time_s:,.1f}" for p in plans)))
    lines.append(row.format("hardware utilization needed", *(f"{p.hardware_utilization:.0%}" for p in plans)))
    lines += [
        "",
        f"at {first.mfu:.0%} MFU: {first.flops_per_token / 1e9:,.1f} GFLOP/token, "
        f"step time {first.step_time_s:,.2f} s, {first.tokens_per_s:,.0f} tokens/s, "
        f"{first.tokens_per_day / 1e9:,.2f} B tokens/day",
    ]
    if first.train_tokens is not None:
        lines.append(f"{first.train_tokens / 1e12:,.2f} T tokens take {first.train_days:,.1f} days")
    problems: dict[str, list[str]] = {}  # problem -> the columns that have it
    notes: dict[str, list[str]] = {}
    for name, plan in zip(names, plans, strict=True):
        for problem in plan.problems:
            problems.setdefault(problem, []).append(name)
        for note in plan.notes:
            notes.setdefault(note, []).append(name)
    lines += [f"{', '.join(columns)}: {problem}" for problem, columns in problems.items()]
    lines += [f"note ({', '.join(columns)}): {note}" for note, columns in notes.items()]
    return "\n".join(lines)


def plan_to_dict(plan: TrainingPlan) -> dict:
    """JSON-ready form of a plan (the ``--json`` output)."""
    data = dataclasses.asdict(plan)
    data["problems"] = list(plan.problems)
    data["notes"] = list(plan.notes)
    data["ok"] = plan.ok
    return data


# --- command line --------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="llama3.1-8b", choices=list(PRESETS), help="model preset")
    parser.add_argument("--gpus", type=int, default=8, help="number of GPUs (default 8)")
    parser.add_argument("--gpu", default="h100", choices=list(GPUS), help="GPU type (default h100)")
    parser.add_argument("--seq", type=int, default=None, help="sequence length (default: 8192 or max_seq_len)")
    parser.add_argument("--batch-tokens", default="16M",
                        help="tokens per optimizer step; K/M suffixes are powers of two, 16M = 2^24 (default 16M)")
    parser.add_argument("--micro-batch", type=int, default=1, help="sequences per GPU per forward (default 1)")
    parser.add_argument("--parallel", choices=["ddp", "fsdp"], default=None,
                        help="one strategy (default: both, or FSDP alone with --tp)")
    parser.add_argument("--tp", "--tensor-parallel", dest="tensor_parallel", type=int, default=1,
                        help="GPUs per tensor-parallel group, with sequence parallelism; needs FSDP, which shards "
                             "over the other dimension of the mesh (default 1: none)")
    parser.add_argument("--ac", choices=["none", "full"], default=None,
                        help="activation checkpointing (default: show both)")
    parser.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilization for the timings (default 0.4)")
    parser.add_argument("--train-tokens", default=None, help="a token budget to time, powers of ten (e.g. 15.6T)")
    parser.add_argument("--gpus-per-node", type=int, default=8, help="GPUs joined by NVLink (default 8)")
    parser.add_argument("--internode-gbps", type=float, default=INTERNODE_GBPS,
                        help=f"network GB/s of each GPU's own NIC across nodes (default {INTERNODE_GBPS:g}); a "
                             f"data-parallel group with k GPUs on a node uses k of them at once")
    parser.add_argument("--json", action="store_true", help="print the plans as JSON")


def run(args: argparse.Namespace) -> int:
    parallels = (args.parallel,) if args.parallel else None
    checkpointing = (args.ac == "full",) if args.ac else (False, True)
    try:
        plans = plan_grid(get_preset(args.preset), parallels=parallels, checkpointing=checkpointing, gpus=args.gpus,
                          gpu=args.gpu, seq_len=args.seq, batch_tokens=args.batch_tokens, micro_batch=args.micro_batch,
                          mfu=args.mfu, train_tokens=args.train_tokens, gpus_per_node=args.gpus_per_node,
                          internode_gbps=args.internode_gbps, tensor_parallel=args.tensor_parallel,
                          model=args.preset)
    except ValueError as error:
        raise UserError(str(error)) from error
    if args.json:
        print(json.dumps([plan_to_dict(p) for p in plans], indent=2))
    else:
        print(format_plans(plans))
    return 0
