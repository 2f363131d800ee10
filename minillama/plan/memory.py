"""Memory per GPU of a training run: weights, gradients, optimizer state, FSDP's buffers and activations.

Bytes per parameter follow ZeRO's mixed-precision accounting (Rajbhandari et al. 2020): bf16 weights (2) and
gradients (2), fp32 optimizer state (12: master weights and AdamW's two moments), replicated under DDP and divided
by the data-parallel ranks under FSDP. Activations are counted per block from the tensors autograd keeps; chapters
8 and 9 derive each term and check it against ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

from minillama.config import ModelConfig

BYTES_WEIGHTS = 2  # bf16
BYTES_GRADIENTS = 2  # bf16
BYTES_OPTIMIZER = 12  # fp32 master weights + AdamW's first and second moments
BYTES_GATHERED = 2  # FSDP's param_dtype, bf16: the gathered weights and the gradients autograd computes for them
BYTES_REDUCED = 4  # fp32 gradient reduction: FSDP's reduce_dtype; DDP's gradients of fp32 parameters under autocast


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

    >>> from minillama.config import get_preset
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

    >>> from minillama.config import get_preset
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

    >>> from minillama.config import get_preset
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
