"""Tensor parallelism (Megatron-LM, Shoeybi et al. 2019) with sequence parallelism (Korthikanti et al. 2022).

Data parallelism gives every rank the whole model and a slice of the batch; tensor parallelism gives every rank a
slice of every weight matrix and the whole batch. Within one transformer block, over ``tp`` ranks:

* **attention**: ``wq``, ``wk``, ``wv`` are split by output features (*column-wise*): rank ``r`` computes the query
  heads ``r*H/tp ... (r+1)*H/tp - 1`` and their key/value heads, so attention itself needs no communication (heads
  are independent). ``wo`` is split by input features (*row-wise*): each rank multiplies its heads' outputs by its
  rows of ``wo``, giving a partial sum of the full output, and the partial sums are added across ranks;
* **feed-forward**: ``w1`` and ``w3`` column-wise (each rank holds ``ffn_hidden_dim / tp`` hidden units, and SwiGLU is
  elementwise), ``w2`` row-wise, with one sum across ranks at the end;
* **sequence parallelism**: between those two regions (the residual stream, the RMSNorms) every rank would hold the
  same ``(B, T, dim)`` activations; instead each rank keeps ``T / tp`` of the positions. The sum after ``wo``/``w2``
  becomes a *reduce-scatter* over positions, and the input of ``wq``/``w1`` an *all-gather*: the same bytes on the
  wire as Megatron's all-reduce, and ``tp`` times less activation memory for the norms and the residual stream;
* **embeddings and head**: the embedding table and the output head are split over the vocabulary (128,256 rows in
  Llama 3, the largest matrices of the small models; a vocabulary that ``tp`` does not divide is split as evenly as
  possible), and the logits are gathered whole for the loss.

Per block that is two all-gathers and two reduce-scatters in the forward, and as many in the backward, each of
``B x T x dim`` activations: far more traffic than FSDP's weight gathers, which is why ``tp`` stays within one node
(8 GPUs on NVLink) and data parallelism spans the nodes. Llama 3 405B was trained with ``tp = 8``.

Everything is expressed with PyTorch's own ``DTensor`` layouts (``parallelize_module`` with ``ColwiseParallel``,
``RowwiseParallel``, ``SequenceParallel``, ``PrepareModuleInput``), as torchtitan does (Liang et al. 2024): the
model file is unchanged (its attention reads the number of local heads from the shapes) and parameters keep their
names, so checkpoints written by ``torch.distributed.checkpoint`` reload on any other layout.
"""

from __future__ import annotations

import warnings

from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)

from minillama.config import ModelConfig


def check_tensor_parallel(config: ModelConfig, tp: int, seq_len: int | None = None) -> None:
    """Raise a ``ValueError`` naming the first dimension of ``config`` that ``tp`` ranks cannot split evenly."""
    if tp < 1:
        raise ValueError(f"tensor_parallel must be >= 1, got {tp}")
    if tp == 1:
        return
    checks = [("n_heads", config.n_heads), ("n_kv_heads", config.n_kv_heads),
              ("ffn_hidden_dim", config.ffn_hidden_dim)]
    if seq_len is not None:
        checks.append(("seq_len", seq_len))
    for name, value in checks:
        if value % tp:
            raise ValueError(f"tensor parallelism over {tp} ranks splits {name} ({value}) {tp} ways: it must be "
                             f"divisible by {tp}")
    if config.tie_embeddings:
        raise ValueError("tensor parallelism does not split tied embeddings (the Llama 3.2 1B/3B models); they fit "
                         "on one GPU: use data parallelism alone (--tensor-parallel 1)")


def block_plan() -> dict[str, object]:
    """How one ``TransformerBlock`` is split: the layouts of its weights and of the activations between them.

    ``Shard(1)`` is "split over positions" (sequence parallel), ``Replicate()`` "every rank has all of it".
    """
    return {
        "attention_norm": SequenceParallel(),  # norm weights replicated, activations split over positions
        # the attention's input x: gathered from the positions' slices (all-gather); freqs_cis, start_pos and the
        # cache pass unchanged
        "attention": PrepareModuleInput(input_layouts=(Shard(1), None, None, None),
                                        desired_input_layouts=(Replicate(), None, None, None)),
        "attention.wq": ColwiseParallel(),  # each rank: n_heads / tp query heads
        "attention.wk": ColwiseParallel(),  # ... and n_kv_heads / tp key/value heads
        "attention.wv": ColwiseParallel(),
        "attention.wo": RowwiseParallel(output_layouts=Shard(1)),  # partial sums -> reduce-scatter over positions
        "ffn_norm": SequenceParallel(),
        "feed_forward": PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)),
        "feed_forward.w1": ColwiseParallel(),  # ffn_hidden_dim / tp hidden units per rank
        "feed_forward.w3": ColwiseParallel(),
        "feed_forward.w2": RowwiseParallel(output_layouts=Shard(1)),
    }


def root_plan() -> dict[str, object]:
    """Embeddings, final norm and output head: split over the vocabulary; the logits are gathered whole."""
    return {
        # token ids are the same on every rank; each looks up its vocabulary rows (zeros for the others), and the
        # sum over ranks is reduce-scattered over positions
        "tok_embeddings": RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1)),
        "norm": SequenceParallel(),
        # positions gathered, each rank computes the logits of its vocabulary slice, the slices are gathered
        "output": ColwiseParallel(input_layouts=Shard(1), output_layouts=Replicate()),
    }


def apply_tensor_parallel(model: nn.Module, tp_mesh: DeviceMesh) -> nn.Module:
    """Split ``model`` (a ``Llama``) over the ranks of ``tp_mesh`` in place; returns it.

    Every rank of ``tp_mesh`` must feed the same token ids (they form one data-parallel rank): the loader deals
    batches by data-parallel rank. Call before activation checkpointing, ``torch.compile`` and FSDP, which then see
    the split blocks.
    """
    tp = tp_mesh.size()
    check_tensor_parallel(model.config, tp)
    # The gathered logits are a view of a DTensor's local tensor, and FSDP warns about any view that a root module
    # returns (an in-place op on it would skip a backward hook). minillama's loss never modifies logits in place;
    # copying 128K-wide logits to silence the warning would cost more memory than the activations of a block.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    for block in model.layers:
        parallelize_module(block, tp_mesh, block_plan())
    parallelize_module(model, tp_mesh, root_plan())
    return model
