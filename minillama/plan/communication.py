"""What a training step sends between GPUs, how fast, and the plan that weighs it against the computation.

FSDP all-gathers each unit's weights (forward and backward) and reduce-scatters its gradients; DDP all-reduces the
gradients; tensor parallelism all-gathers and reduce-scatters activations inside each block. Bytes per GPU are
counted collective by collective against PyTorch in the tests; the step time at a given MFU comes from the FLOPs
per token and the GPU's peak (:mod:`minillama.gpus`). Chapter 9 derives the formulas.

>>> from minillama.config import get_preset
>>> p = plan_training(get_preset("llama3.1-8b"), gpus=8, gpu="h100", parallel="fsdp", activation_checkpointing=True)
>>> round(p.memory.weights / 1e9, 2), p.fits, p.grad_accum_steps
(2.01, True, 256)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from minillama.config import PRESETS, ModelConfig
from minillama.gpus import GPU, GPUS
from minillama.plan.memory import (
    BYTES_GATHERED,
    BYTES_REDUCED,
    MemoryPerGPU,
    fsdp_units,
    memory_per_gpu,
    tensor_parallel_params,
)

INTERNODE_GBPS = 50.0
"""Network bandwidth per GPU across nodes, per direction: 400 Gb/s (one InfiniBand/RoCE NIC per GPU, Llama 3 §3.3.1)."""


def parse_count(text: str | int, *, binary: bool = False) -> int:
    """``"16M"`` -> a number. Suffixes K, M, B/G, T; powers of two with ``binary`` (batch sizes), else of ten.

    Llama 3's "16M-token batch" is 2^24 tokens (2,048 x 8,192); token budgets ("15.6T tokens") are decimal.

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


def fsdp_comm_bytes(config: ModelConfig, data_parallel: int, tensor_parallel: int = 1) -> int:
    """Bytes each GPU sends for FSDP in one forward + backward (one micro-batch), ring collectives over
    ``data_parallel`` ranks: bf16 all-gathers of every unit in the forward and, in the backward, of all but the two
    that keep their weights from the forward because the backward starts with them (the head's unit, ``H``, and the
    last block, ``B``): ``2 (2 N - H - B)``; and the fp32 reduce-scatter of the gradients, ``4 N``, for a slice of
    ``N`` parameters; ``(dp - 1) / dp`` of that. (The embedding table is gathered again for its backward, which does
    not read it: FSDP gathers every unit before its backward.)

    >>> from minillama.config import get_preset
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

    >>> from minillama.config import get_preset
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

    ``seq_len``: 8,192 (Llama 3's pre-training context) or the model's ``max_seq_len`` if shorter; ``batch_tokens``
    (``"16M"`` = 2^24): a whole number of sequences; ``micro_batch`` sequences per data-parallel rank go through each
    forward/backward, gradient accumulation makes up the rest of the batch."""
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
    if not 0 < internode_gbps < float("inf"):  # NaN fails too
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
