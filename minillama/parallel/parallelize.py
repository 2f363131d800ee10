"""``parallelize(model, parallel_config)``: every multi-GPU technique applied to a plain ``Llama`` from outside.

The model file never imports ``torch.distributed``; this function applies, in torchtitan's fixed order
(Liang et al. 2024): 0. tensor parallelism or FP8, which change what the weights are or what the linears compute;
1. activation checkpointing per block, which changes what a block's forward is; 2. ``torch.compile`` per block, so
each graph is one block, recomputation included; 3. data parallelism, last, because it wraps the rest: FSDP2
``fully_shard`` of the embedding, each block and [norm, output] (on the mesh's ``"dp"`` dimension with tensor
parallelism), or DDP. Under FSDP the weights are stored in float32 and gathered in ``param_dtype`` (bf16 on
CUDA), gradients reduced in float32; on CPU (gloo) everything stays float32, which makes the tests exact.
Chapter 9 explains each step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel

from minillama.kernels.float8 import convert_to_float8
from minillama.parallel.tensor_parallel import apply_tensor_parallel
from minillama.train.config import check_parallel_options
from minillama.train.wrapping import apply_activation_checkpointing, compile_blocks

DATA_PARALLEL = ("none", "ddp", "fsdp")


@dataclass(frozen=True)
class ParallelConfig:
    """How to spread one model over the ranks of a job: data parallelism, optionally with tensor parallelism (no
    pipeline or context parallelism)."""

    data_parallel: str = "fsdp"
    """``"fsdp"`` (shard weights, gradients and optimizer state), ``"ddp"`` (replicate) or ``"none"``."""
    tensor_parallel: int = 1
    """Ranks of each tensor-parallel group (1 = none); needs ``"fsdp"``, which then shards over the other ranks."""
    activation_checkpointing: bool = False
    """Recompute each block's activations in the backward pass (about 1/3 more compute, far less memory)."""
    compile: bool = False
    """``torch.compile`` each transformer block."""
    float8: bool = False
    """FP8 matmuls in the block linears (torchao, H100/Ada GPUs). Weights are still gathered by FSDP in
    ``param_dtype`` (torchao's float8 all-gather would put its own weight class into the checkpoints)."""
    param_dtype: torch.dtype | None = None
    """FSDP: dtype of the all-gathered weights that the forward and backward compute with; ``None`` = as stored."""
    reduce_dtype: torch.dtype | None = torch.float32
    """FSDP: dtype of the gradient reduce-scatter; ``None`` = ``param_dtype``."""
    reshard_after_forward: bool = True
    """FSDP: free each block's gathered weights after its forward (ZeRO-3) and gather them again for the backward;
    ``False`` keeps them until the backward (ZeRO-2: more memory, one all-gather less per block)."""

    def __post_init__(self) -> None:
        if self.data_parallel not in DATA_PARALLEL:
            raise ValueError(f"data_parallel must be one of {', '.join(DATA_PARALLEL)}, got {self.data_parallel!r}")
        check_parallel_options(self.data_parallel, self.tensor_parallel, compile=self.compile, float8=self.float8)

    @classmethod
    def from_train_config(cls, config, amp_dtype: torch.dtype | None) -> ParallelConfig:
        """From a ``TrainConfig`` (its ``parallel``, ``compile`` and ``activation_checkpointing`` fields) and the
        trainer's autocast dtype: under FSDP the weights are gathered in that dtype (bf16 on CUDA, float32 on CPU),
        and gradients are always reduced in float32."""
        check_parallel_options(config.parallel, config.tensor_parallel, float8=config.float8, amp_dtype=amp_dtype)
        return cls(data_parallel=config.parallel, tensor_parallel=config.tensor_parallel, float8=config.float8,
                   activation_checkpointing=config.activation_checkpointing,
                   compile=config.compile, param_dtype=amp_dtype if config.parallel == "fsdp" else None)


def data_parallel_mesh() -> DeviceMesh:
    """A one-dimensional mesh over every rank of the job: the group that FSDP shards over."""
    return parallel_mesh(1)


def parallel_mesh(tensor_parallel: int = 1) -> DeviceMesh:
    """The job's ranks as a ``(dp, tp)`` grid (a 1D ``("dp",)`` mesh when ``tensor_parallel`` is 1).

    Rank ``r`` is data-parallel rank ``r // tp`` and tensor-parallel rank ``r % tp``: a tensor-parallel group is
    ``tp`` consecutive ranks, which torchrun puts on one node, so that its heavy traffic stays on NVLink.
    The device type follows the process group's backend (NCCL: ``cuda``, gloo: ``cpu``), not the model's device,
    so that a model on the meta device is sharded for the devices it will be materialized on.
    """
    if not dist.is_initialized():
        raise RuntimeError("FSDP and tensor parallelism need a process group: call "
                           "minillama.parallel.init_distributed() first (under torchrun; a single process can join "
                           "a group of one)")
    device_type = "cuda" if dist.get_backend() == "nccl" else "cpu"
    world_size = dist.get_world_size()
    if tensor_parallel == 1:
        return init_device_mesh(device_type, (world_size,), mesh_dim_names=("dp",))
    check_parallel_options("fsdp", tensor_parallel, world_size=world_size)
    return init_device_mesh(device_type, (world_size // tensor_parallel, tensor_parallel),
                            mesh_dim_names=("dp", "tp"))


def apply_fsdp(model: nn.Module, mesh: DeviceMesh, policy: MixedPrecisionPolicy, reshard_after_forward: bool = True
               ) -> nn.Module:
    """``fully_shard`` the embedding table, each block of ``model.layers``, the final norm with the output head, then
    the root, in place, as torchtitan does; returns ``model``.

    Each call makes one unit, gathered by one all-gather and reduce-scattered by one reduce-scatter, so the units in
    forward order are: ``tok_embeddings``; each block; ``[norm, output]``; the root, which then holds no parameters
    and only drives the others. Splitting the table from the head halves what would be the largest all-gather (a root
    of embeddings, norm and head holds ``2 V d + d`` parameters: 1.05B for 8B, 4.2B for 405B), and the head's
    gradient is reduce-scattered, and its weights freed, as soon as the head's backward is done instead of at the end
    of the backward.

    With ``reshard_after_forward`` (ZeRO-3), every unit's gathered weights are freed after its forward and gathered
    again for its backward, except where that would be wasted traffic: the head unit and the last block keep their
    weights, because the backward starts with them. The embedding table is freed: the backward reaches it last (and
    FSDP gathers it again then, although an embedding's backward does not read its weights).

    With tied embeddings (Llama 3.2 1B and 3B: ``model.output is None``) the head multiplies by
    ``tok_embeddings.weight``, which is used first and last in the forward and first and last in the backward. A
    parameter belongs to one unit, and a unit is gathered around its modules' forwards: as a unit of its own the
    embedding would gather the table for its forward only, and the head, which reads the weight outside that module,
    would find it sharded. So the table stays in the root, with the final norm; the root keeps its weights from the
    forward to the backward, which starts with it, and reduce-scatters their gradient once the embedding's backward
    has added its part, at the end.
    """
    n_layers = len(model.layers)
    if model.output is not None:
        fully_shard(model.tok_embeddings, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)
    for index, block in enumerate(model.layers):
        fully_shard(block, mesh=mesh, mp_policy=policy,
                    reshard_after_forward=reshard_after_forward and index < n_layers - 1)
    if model.output is not None:
        fully_shard([model.norm, model.output], mesh=mesh, mp_policy=policy, reshard_after_forward=False)
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=False)
    return model


def apply_ddp(model: nn.Module, device: torch.device) -> DistributedDataParallel:
    """Wrap ``model`` in DDP: rank 0's weights are broadcast to every rank, gradients are all-reduced (averaged).

    ``Llama`` has no buffers (RoPE's angles are computed in the forward), so DDP's forward itself communicates
    nothing: evaluation, under ``no_grad``, may run a different number of batches on each rank.
    ``gradient_as_bucket_view``: the ``.grad`` tensors are views into DDP's communication buckets, saving a copy.
    """
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   gradient_as_bucket_view=True)


def parallelize(model: nn.Module, parallel_config: ParallelConfig, mesh: DeviceMesh | None = None) -> nn.Module:
    """Apply ``parallel_config`` to ``model`` (a ``Llama``) and return the module the training loop calls.

    FSDP modifies ``model`` in place and returns it (its parameters become shards); DDP returns a wrapper around it
    (``wrapper.module is model``); ``"none"`` returns ``model``. Call it after the process group is initialized
    (:func:`~minillama.parallel.distributed.init_distributed`) and before building the optimizer, which must see
    the sharded parameters. ``model`` may live on the meta device (FSDP then shards shapes only; materialize with
    ``model.to_empty(device=...)`` and ``model.init_weights()``). ``mesh`` defaults to :func:`parallel_mesh`.
    """
    if parallel_config.tensor_parallel > 1 or parallel_config.data_parallel == "fsdp":
        mesh = mesh or parallel_mesh(parallel_config.tensor_parallel)
    # 0. tensor parallelism: replaces the weights by their slices, so it comes before everything else.
    if parallel_config.tensor_parallel > 1:
        if "tp" not in (mesh.mesh_dim_names or ()):
            raise ValueError("tensor parallelism needs a mesh with a 'tp' dimension (see parallel_mesh)")
        apply_tensor_parallel(model, mesh["tp"])
    if parallel_config.float8:  # raises, with the reason, where FP8 cannot run
        convert_to_float8(model, recipe="tensorwise")
    # 1. activation checkpointing: changes what each block's forward does, so it comes first.
    if parallel_config.activation_checkpointing:
        apply_activation_checkpointing(model)
    # 2. torch.compile, block by block: compiles the (checkpointed) block; FSDP's hooks stay around it.
    if parallel_config.compile:
        compile_blocks(model)
    # 3. data parallelism, last: it wraps the blocks built above.
    if parallel_config.data_parallel == "fsdp":
        policy = MixedPrecisionPolicy(param_dtype=parallel_config.param_dtype,
                                      reduce_dtype=parallel_config.reduce_dtype)
        dp_mesh = mesh["dp"] if mesh.ndim > 1 else mesh
        return apply_fsdp(model, dp_mesh, policy, parallel_config.reshard_after_forward)
    if parallel_config.data_parallel == "ddp":
        return apply_ddp(model, next(model.parameters()).device)
    return model

